"""Schema upgrades, one function per version step, run by ``ensure_schema`` inside its transaction, when a
store is opened (with foreign keys off on SQLite: ``store.sqlite.connect`` turns them on afterwards).

Steps 2 to 4 only add (columns with ``ALTER TABLE ... ADD COLUMN``, tables, indexes) and fill what they
added from the data already there, or replace an index by a wider one. Step 5 moves each entry's current
document into a table of its own and rebuilds ``entries`` without it. An existing store keeps everything
it had. Step 6 adds the ``peers`` table, step 7 the ``approvals`` table, step 8 chat's tables (which
chat kept beside the store's until then), step 9 the indicator index and the incidents' UUIDs, filled
from the documents, step 10 the custody chain of relayed documents, step 11 each entry's indicators as
extracted (for STIX without parsing), filled from the documents, step 12 the indexes the operators'
dashboard and ``/metrics`` read (``counts.INDEXES``), step 13 the STIX object index (``store.objectindex``),
filled from the indicators of step 11.

PostgreSQL stores run the same steps from version 1 (one history, one schema for both); the SQL is the
table modules' (``store.sql``), and only step 5 takes a different way on PostgreSQL, which can drop a
column in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from xmppbridge.iodef.markings import PURPOSES
from xmppbridge.iodef.parse import StoredDocument
from xmppbridge.store import (
    approvals,
    changelog,
    chatstate,
    counts,
    entries,
    incidents,
    indicatorindex,
    objectindex,
    peers,
    rejects,
    search,
    searchindex,
)
from xmppbridge.store.db import _SCHEMA, SCHEMA_VERSION, transaction
from xmppbridge.store.sql import Connection

log = logging.getLogger(__name__)


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
        return upgrade(conn, SCHEMA_VERSION)


def upgrade(conn: Connection, target: int) -> bool:
    """Bring the schema from its recorded version to ``target``; whether any step ran. Call inside a
    transaction."""
    version = first = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    for number, step in _STEPS:
        if version < number <= target:
            step(conn)
            conn.execute("UPDATE schema_version SET version = ?", (number,))
            version = number
    return version != first


def _to_2(conn: Connection) -> None:
    """The complete ROLIE feed: document revisions, the change log, search indexes, outbox actions."""
    for statement in (
        "ALTER TABLE entries ADD COLUMN revision INTEGER NOT NULL DEFAULT 1",
        # policy.canonical_purpose(purpose): with effective_restriction, what access rights key on
        "ALTER TABLE entries ADD COLUMN purpose_key TEXT NOT NULL DEFAULT 'other'",
        "ALTER TABLE entry_versions ADD COLUMN number INTEGER",
        # The Incident of a superseded version (JSON, store.incidents); NULL for versions stored before
        # version 2 of the schema, which are shown with the entry's current Incident.
        "ALTER TABLE entry_versions ADD COLUMN incident TEXT",
        "ALTER TABLE outbox ADD COLUMN action TEXT NOT NULL DEFAULT 'publish'",  # or 'retract'
        *changelog.SCHEMA,
        *searchindex.schema(conn.dialect),
        "CREATE INDEX IF NOT EXISTS entry_versions_number ON entry_versions (entry_id, number)",
        "CREATE INDEX IF NOT EXISTS entries_incident_id ON entries (incident_id)",
        *(f"CREATE INDEX IF NOT EXISTS entries_{name} ON entries ({name})" for name in incidents.TIME_FIELDS),
    ):
        conn.execute(statement)

    known = ", ".join(f"'{purpose}'" for purpose in PURPOSES)
    conn.execute(f"UPDATE entries SET purpose_key = CASE WHEN purpose IN ({known}) THEN purpose"
                 " ELSE 'other' END")
    conn.execute(
        "UPDATE entry_versions SET number = (SELECT count(*) FROM entry_versions AS older"
        " WHERE older.entry_id = entry_versions.entry_id AND older.id <= entry_versions.id)"
    )
    conn.execute("UPDATE entries SET revision = 1 + (SELECT count(*) FROM entry_versions"
                 " WHERE entry_id = entries.id)")
    # The log starts with each entry's current state, in the order the entries last changed. The
    # document is still in the entry row: it leaves only in version 5.
    for row in conn.execute("SELECT * FROM entries ORDER BY updated_at, id").fetchall():
        changelog.append(conn, entry_id=row["id"], collection=row["effective_restriction"],
                         revision=row["revision"], purpose=row["purpose_key"],
                         deleted=row["deleted_at"] is not None, changed_at=row["updated_at"])
        searchindex.index(conn, row["id"], StoredDocument(bytes(row["xml"])), incidents.from_columns(row))


def _to_4(conn: Connection) -> None:
    """Covering indexes, so that counting search results never reads entry rows (issue 7). Each time
    index becomes a wider one with the same leading column; on a million entries this takes a minute."""
    for name in incidents.TIME_FIELDS:
        conn.execute(f"DROP INDEX IF EXISTS entries_{name}")
    for statement in search.INDEXES:
        conn.execute(statement)


# ``entries`` from version 5 on: the columns of version 1 (db._SCHEMA) without ``xml``, then those that
# version 2 added.
_ENTRIES_5 = """
    CREATE TABLE entries_5 (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        item_id TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('local', 'remote')),
        version TEXT NOT NULL,
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
        revision INTEGER NOT NULL DEFAULT 1,  -- number of the current document version
        purpose_key TEXT NOT NULL DEFAULT 'other',  -- policy.canonical_purpose(purpose)
        UNIQUE (service, node, item_id)
    )
"""
_MANY_ENTRIES = 100_000


def _to_5(conn: Connection) -> None:
    """Each entry's current document moves to ``documents`` (``entries.DOCUMENTS``), so that entry rows
    shrink from ~3 KB to ~0.5 KB and the 50 rows of a feed page lie on ~22 disk pages instead of 50 (a
    deep page of a million entries read 224 KiB from disk, now 112 KiB). ``entries`` is rebuilt without
    ``xml`` (SQLite's twelve-step ALTER TABLE procedure) because ``ALTER TABLE ... DROP COLUMN`` rewrites
    each row where it is, leaving every 0.5 KB row alone on its 4 KB page."""
    if conn.dialect.name == "postgresql":
        conn.execute(entries.DOCUMENTS)
        conn.execute("INSERT INTO documents (entry_id, xml) SELECT id, xml FROM entries")
        conn.execute("ALTER TABLE entries DROP COLUMN xml")
        return
    if conn.execute("PRAGMA foreign_keys").fetchone()[0]:
        # With them on, dropping the old table would check each of its rows against every table that
        # refers to entries, some of which have no index for it.
        raise RuntimeError("schema version 5 rebuilds the entries table: run it with foreign keys off")
    total = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    if total >= _MANY_ENTRIES:
        log.warning("store schema version 5: moving the documents of %d entries into a table of their own;"
                    " this takes one and a half to two minutes per million entries, the store stays locked"
                    " meanwhile, and it needs free disk space of about twice the store's size", total)
    indexes = [row[0] for row in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' AND sql IS NOT NULL")]
    conn.execute(entries.DOCUMENTS)
    conn.execute("INSERT INTO documents (entry_id, xml) SELECT id, xml FROM entries")
    conn.execute(_ENTRIES_5)
    columns = ", ".join(row[0] for row in conn.execute("SELECT name FROM pragma_table_info('entries_5')"))
    conn.execute(f"INSERT INTO entries_5 ({columns}) SELECT {columns} FROM entries")  # in id order
    with _secure_delete_off(conn):
        conn.execute("DROP TABLE entries")  # its indexes with it
    conn.execute("ALTER TABLE entries_5 RENAME TO entries")
    for statement in indexes:
        conn.execute(statement)


def _to_6(conn: Connection) -> None:
    """Per-peer health (``store.peers``): a new table, empty until the bridge next talks to its peers."""
    for statement in peers.SCHEMA:
        conn.execute(statement)


def _to_7(conn: Connection) -> None:
    """Subscription requests held for an operator (``store.approvals``): a new table, empty."""
    for statement in approvals.SCHEMA:
        conn.execute(statement)


def _to_8(conn: Connection) -> None:
    """Chat's state into the store's schema (``store.chatstate``; a store whose bridge already ran chat
    has the tables: they stay as they are), and the quarantine's lookup by digest, which PostgreSQL cannot
    make with the item index (``IS NOT DISTINCT FROM`` uses no index there)."""
    for statement in (*chatstate.SCHEMA, "CREATE INDEX IF NOT EXISTS rejects_digest ON rejects (raw_sha256)"):
        conn.execute(statement)


def _to_9(conn: Connection) -> None:
    """The indicator index (``store.indicatorindex``), filled from every entry's current document (each
    parsed once more; the log says how many, since on a large store this takes a while), and the change
    log's index by time, for TAXII's ``added_after``."""
    for statement in (*indicatorindex.SCHEMA, changelog.ADDED_INDEX):
        conn.execute(statement)
    rows = conn.execute("SELECT e.*, d.xml FROM entries AS e JOIN documents AS d ON d.entry_id = e.id"
                        " ORDER BY e.id").fetchall()
    if len(rows) >= _MANY_ENTRIES:
        log.info("indexing the indicators of %d entries (schema 9)", len(rows))
    for row in rows:
        indicatorindex.index(conn, row["id"], StoredDocument(bytes(row["xml"])), incidents.from_columns(row),
                             new=True)


def _to_10(conn: Connection) -> None:
    """The custody chain of relayed documents (``store.custody``, JSON) on entries and on the outbox
    (hub and spoke, issue 17); NULL, as for every document not relayed, in the rows already there."""
    for table in ("entries", "outbox"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN custody TEXT")


def _to_11(conn: Connection) -> None:
    """Each entry's indicators as extracted (``indicatorindex.LISTS``), filled from its current document.
    A store upgraded from before step 9 has them already: step 9 indexes with today's ``index``."""
    conn.execute(indicatorindex.LISTS)
    missing = ("FROM documents AS d WHERE d.entry_id > ? AND NOT EXISTS"
               " (SELECT 1 FROM entry_indicator_lists AS i WHERE i.entry_id = d.entry_id)")
    total = conn.execute(f"SELECT count(*) AS n {missing}", (0,)).fetchone()["n"]
    if total >= _MANY_ENTRIES:
        log.info("storing the indicators of %d entries (schema 11)", total)
    last = 0
    while True:  # in batches, so that a million documents (3 GB) are not held at once
        rows = conn.execute(f"SELECT d.entry_id, d.xml {missing} ORDER BY d.entry_id LIMIT ?",
                            (last, _BACKFILL_BATCH)).fetchall()
        if not rows:
            return
        for row in rows:
            indicatorindex.list_indicators(conn, row["entry_id"], StoredDocument(bytes(row["xml"])), new=True)
        last = rows[-1]["entry_id"]


_BACKFILL_BATCH = 1000


def _to_12(conn: Connection) -> None:
    """The indexes of the dashboard and of /metrics (``counts.INDEXES``): seconds on a million entries."""
    for statement in counts.INDEXES:
        conn.execute(statement)


def _to_13(conn: Connection) -> None:
    """The STIX object index (``store.objectindex``), filled from each entry's stored indicators (step
    11), a batch at a time. Earlier versions of an entry are not read again: an object that only they
    hold is found by id from the next version on, as in a new store."""
    for statement in objectindex.SCHEMA:
        conn.execute(statement)
    total = conn.execute("SELECT count(*) AS n FROM entry_indicator_lists").fetchone()["n"]
    if total >= _MANY_ENTRIES:
        log.info("indexing the STIX objects of %d entries (schema 13)", total)
    last = 0
    while True:
        rows = conn.execute("SELECT e.id, e.id_name, e.incident_id, e.effective_restriction, i.indicators"
                            " FROM entries AS e JOIN"
                            " entry_indicator_lists AS i ON i.entry_id = e.id WHERE e.id > ? ORDER BY e.id"
                            " LIMIT ?", (last, _BACKFILL_BATCH)).fetchall()
        if not rows:
            return
        for row in rows:
            objectindex.index_keys(conn, row["id"], objectindex.keys(
                row["id_name"], row["incident_id"], indicatorindex.from_json(row["indicators"]),
                row["effective_restriction"]))
        last = rows[-1]["id"]


@contextmanager
def _secure_delete_off(conn: Connection) -> Iterator[None]:
    """Free pages without overwriting them with zeros. For the old entries table that hides nothing: its
    rows were just copied (entries are never removed, only marked deleted). Dropping it takes 10 s on a
    million entries (4 GB), 77 s when every freed page is zeroed."""
    previous = conn.execute("PRAGMA secure_delete").fetchone()[0]
    conn.execute("PRAGMA secure_delete = OFF")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA secure_delete = {('OFF', 'ON', 'FAST')[previous]}")


_STEPS: tuple[tuple[int, Callable[[Connection], None]], ...] = (
    (2, _to_2),
    (3, rejects.migrate_to_3),  # the quarantine (store.rejects)
    (4, _to_4),
    (5, _to_5),
    (6, _to_6),
    (7, _to_7),
    (8, _to_8),
    (9, _to_9),
    (10, _to_10),
    (11, _to_11),
    (12, _to_12),
    (13, _to_13),
)
