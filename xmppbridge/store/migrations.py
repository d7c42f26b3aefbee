"""Schema upgrades, one function per version step, run by ``db.connect`` inside its transaction.

Each step only adds (columns with ``ALTER TABLE ... ADD COLUMN``, tables, indexes) and fills what it
added from the data already there, or replaces an index by a wider one, so an existing store keeps
everything it had.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from xmppbridge.policy import PURPOSES
from xmppbridge.store import changelog, incidents, rejects, search, searchindex


def upgrade(conn: sqlite3.Connection, target: int) -> None:
    """Bring the schema from its recorded version to ``target``. Call inside a transaction."""
    version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    for number, step in _STEPS:
        if version < number <= target:
            step(conn)
            conn.execute("UPDATE schema_version SET version = ?", (number,))
            version = number


def _to_2(conn: sqlite3.Connection) -> None:
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
        *searchindex.SCHEMA,
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
    # The log starts with each entry's current state, in the order the entries last changed.
    for row in conn.execute("SELECT * FROM entries ORDER BY updated_at, id").fetchall():
        changelog.append(conn, entry_id=row["id"], collection=row["effective_restriction"],
                         revision=row["revision"], purpose=row["purpose_key"],
                         deleted=row["deleted_at"] is not None, changed_at=row["updated_at"])
        searchindex.index(conn, row["id"], bytes(row["xml"]), incidents.from_columns(row))


def _to_4(conn: sqlite3.Connection) -> None:
    """Covering indexes, so that counting search results never reads entry rows (issue 7). Each time
    index becomes a wider one with the same leading column; on a million entries this takes a minute."""
    for name in incidents.TIME_FIELDS:
        conn.execute(f"DROP INDEX IF EXISTS entries_{name}")
    for statement in search.INDEXES:
        conn.execute(statement)


_STEPS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (2, _to_2),
    (3, rejects.migrate_to_3),  # the quarantine (store.rejects)
    (4, _to_4),
)
