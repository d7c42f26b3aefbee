"""The version 1 schema, transactions and the few helpers every table module shares, for both backends.

Connections run in autocommit mode (SQLite's are opened by ``store.sqlite``, PostgreSQL's lent by the
pool of ``store.pg``): every write is either a single statement or an explicit ``begin`` ... ``COMMIT``
block (see :func:`transaction`), so nothing stays uncommitted between calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from xmppbridge.store.sql import Connection, Cursor

SCHEMA_VERSION = 13  # each step above 1 is a function in store.migrations
# The version 1 schema, which every store starts from (migrations.ensure_schema brings it up to date). One
# statement per entry; all idempotent so that concurrent openers cannot trip over each other.
_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS entries (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        item_id TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('local', 'remote')),
        version TEXT NOT NULL,
        xml BLOB NOT NULL,  -- in its own table since version 5 (entries.DOCUMENTS)
        signer_subject TEXT NOT NULL,
        signer_fingerprint TEXT NOT NULL,
        -- Incident, one column per field
        id_name TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        instance TEXT,
        restriction_raw TEXT NOT NULL,
        restriction TEXT NOT NULL,
        purpose TEXT NOT NULL,
        report_time TEXT,
        generation_time TEXT,
        detect_time TEXT,
        start_time TEXT,
        end_time TEXT,
        title TEXT NOT NULL,
        alternative_ids TEXT NOT NULL,  -- JSON [[name, id], ...]
        related_ids TEXT NOT NULL,  -- JSON [[name, id], ...]
        narrowest_restriction TEXT,
        -- bookkeeping
        effective_restriction TEXT NOT NULL,  -- incidents.audience(): the feed collection it is filed in
        published_at TEXT,  -- ReportTime/GenerationTime of the first version seen; never changes
        received_at TEXT NOT NULL,  -- first time this item was stored; never changes
        updated_at TEXT NOT NULL,  -- bumped on every change
        deleted_at TEXT,
        UNIQUE (service, node, item_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS entries_restriction_updated ON entries (effective_restriction, updated_at)",
    "CREATE INDEX IF NOT EXISTS entries_updated ON entries (updated_at)",
    """
    CREATE TABLE IF NOT EXISTS entry_versions (
        id INTEGER PRIMARY KEY,
        entry_id INTEGER NOT NULL REFERENCES entries (id),
        version TEXT NOT NULL,
        xml BLOB NOT NULL,
        signer_subject TEXT NOT NULL,
        signer_fingerprint TEXT NOT NULL,
        updated_at TEXT NOT NULL,  -- when the superseded version had been stored
        superseded_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS entry_versions_entry ON entry_versions (entry_id)",
    """
    CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY,
        node TEXT NOT NULL,
        item_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        incident TEXT NOT NULL,  -- JSON, same fields as the entries columns
        version TEXT NOT NULL,
        signer_subject TEXT NOT NULL,
        signer_fingerprint TEXT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'published', 'failed')),
        reason TEXT,
        service TEXT,
        created_at TEXT NOT NULL,
        published_at TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS outbox_status ON outbox (status, id)",
    """
    CREATE TABLE IF NOT EXISTS subscriptions (  -- remote nodes we mirror, for catch-up and `status`
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        subscribed_at TEXT NOT NULL,
        last_item_at TEXT,  -- last time an item (event or fetch) arrived from the node
        last_sync_at TEXT,  -- last completed catch-up
        PRIMARY KEY (service, node)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS bridge_state (  -- what the running bridge reports about itself
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS rejects (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        service TEXT,
        node TEXT,
        item_id TEXT,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        raw BLOB NOT NULL,
        received_at TEXT NOT NULL
    )
    """,
)


@contextmanager
def transaction(conn: Connection, *, schema: bool = False, pipelined: bool = False) -> Iterator[Connection]:
    """``begin`` (take the write lock up front: SQLite's ``BEGIN IMMEDIATE``, waiting up to busy_timeout,
    or PostgreSQL's advisory lock) ... ``COMMIT``. ``pipelined``: on PostgreSQL, the whole of it, ``begin``
    and ``COMMIT`` too, in ``conn.pipeline()``, for writes that read rows but never count them; an error
    shows at a read or at the pipeline's end, and is undone then."""
    if pipelined and conn.dialect.name == "postgresql":
        try:
            with conn.pipeline():
                conn.begin()
                yield conn
                conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")  # at most a warning when the failure was the COMMIT's
            raise
        return
    begin_schema = getattr(conn, "begin_schema", None) if schema else None
    (begin_schema or conn.begin)()
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def savepoint(conn: Connection, *, pipelined: bool = False) -> Iterator[Connection]:
    """One write inside a larger open transaction (``Store.batch``): undone alone if it fails, leaving
    the transaction's other writes in place. ``pipelined``: as for ``transaction``."""
    if pipelined and conn.dialect.name == "postgresql":
        try:
            with conn.pipeline():
                conn.execute("SAVEPOINT write")
                yield conn
                conn.execute("RELEASE write")
        except BaseException:
            conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
            raise
        return
    conn.execute("SAVEPOINT write")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK TO write")
        conn.execute("RELEASE write")
        raise
    conn.execute("RELEASE write")


def inserted_id(cursor: Cursor) -> int:
    """The id an ``INSERT ... RETURNING id`` reports (both backends; SQLite's lastrowid has no
    PostgreSQL counterpart)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("INSERT did not report a row id")
    return int(row[0])


# Times are stored as fixed-width UTC ISO strings so that text order equals time order. isoformat, not
# strftime: glibc's %Y does not pad years below 1000 to four digits.


def now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """Aware datetime -> ``2024-05-01T12:00:00.000000Z``; a naive value is read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def to_text(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def parse_time(value: str) -> datetime:
    if value.endswith("Z"):  # what format_time writes; fromisoformat reads the Z as UTC itself
        return datetime.fromisoformat(value)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def from_text(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)


def later_than(previous: str | None) -> str:
    """Now, or a microsecond after ``previous`` when the clock has not moved past it (keeps order strict)."""
    current = now()
    before = from_text(previous)
    if before is not None and current <= before:
        current = before + timedelta(microseconds=1)
    return format_time(current)
