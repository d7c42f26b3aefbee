"""Connections, schema and the few helpers every table module shares, for both backends.

SQLite: one long-lived connection in the asyncio process plus short-lived connections from CLI
processes. WAL mode lets readers run beside one writer; ``busy_timeout`` makes a second writer wait (up
to 5 s) instead of failing at once. PostgreSQL (``store.pg``): pooled connections, writers taking turns
on an advisory lock. Either way connections run in autocommit mode: every write is either a single
statement or an explicit ``begin`` ... ``COMMIT`` block (see :func:`transaction`), so nothing stays
uncommitted between calls.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from xmppbridge.store.sql import Connection, Cursor, SqliteConnection

SCHEMA_VERSION = 8  # each step above 1 is a function in store.migrations
BUSY_TIMEOUT_MS = 5000
_SLOW_UPGRADE_SECONDS = 1.0  # a new or small store upgrades in milliseconds; a longer upgrade is logged

log = logging.getLogger(__name__)

# The version 1 schema, which every store starts from (store.migrations brings it up to date). One
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


def connect(path: str) -> SqliteConnection:
    """Open ``path`` in WAL mode with a busy timeout and make sure the schema exists."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=SqliteConnection)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # durable at each commit in WAL mode except on power loss
    started = time.perf_counter()
    if ensure_schema(conn):
        # A large upgrade leaves a WAL file as large as what it wrote (GBs for version 5 on a big store),
        # which keeps that size while this connection lives: copy it into the database and truncate it.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        seconds = time.perf_counter() - started
        if seconds >= _SLOW_UPGRADE_SECONDS:
            log.info("store %s: schema upgraded to version %d in %.0f s", path, SCHEMA_VERSION, seconds)
    # Only now: rebuilding a table (migrations._to_5) needs them off, and the pragma cannot change inside
    # the upgrade's transaction.
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def ensure_schema(conn: Connection) -> bool:
    """Create or upgrade the schema; whether it was upgraded (a new store is, from version 1). On
    PostgreSQL under the schema lock, so that processes starting together do not both create it."""
    with transaction(conn, schema=True):
        for statement in _SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            # A new file has the version 1 tables above; the migrations bring it to SCHEMA_VERSION like
            # any existing store, so there is one way to each schema version.
            conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        elif row["version"] > SCHEMA_VERSION:
            raise RuntimeError(
                f"store schema version {row['version']} is newer than this xmppbridge ({SCHEMA_VERSION});"
                " upgrade xmppbridge"
            )
        from xmppbridge.store import migrations  # imports the table modules, which import this one

        return migrations.upgrade(conn, SCHEMA_VERSION)


@contextmanager
def transaction(conn: Connection, *, schema: bool = False) -> Iterator[Connection]:
    """``begin`` (take the write lock up front: SQLite's ``BEGIN IMMEDIATE``, waiting up to busy_timeout,
    or PostgreSQL's advisory lock) ... ``COMMIT``."""
    begin_schema = getattr(conn, "begin_schema", None) if schema else None
    (begin_schema or conn.begin)()
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def savepoint(conn: Connection) -> Iterator[Connection]:
    """One write inside a larger open transaction (``Store.batch``): undone alone if it fails, leaving
    the transaction's other writes in place."""
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
