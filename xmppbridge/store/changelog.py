"""The feed's change log: an append-only sequence of changes per collection (restriction).

Every change to an entry (new, new document version, deleted, undeleted, moved to another collection)
appends one row with the next sequence number of its collection. Rows are never updated except for
the ``current`` flag, which marks the latest row of an entry within a collection. That gives the feed
two views at no extra cost:

* the current state of a collection: the rows with ``current = 1`` (live entries and tombstones);
* RFC 5005 archives: fixed ranges of sequence numbers, whose content never changes once the range is
  full, because the rows in it never change (see ``feedviews.archive``).

Functions take an open connection inside the caller's transaction; ``entries`` calls ``append``.
"""

from __future__ import annotations

from xmppbridge.store.sql import Connection

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS changes (
        collection TEXT NOT NULL,  -- the entry's effective restriction at the time
        seq INTEGER NOT NULL,  -- 1, 2, 3 ... per collection
        entry_id INTEGER NOT NULL REFERENCES entries (id),
        revision INTEGER NOT NULL,  -- the entry's document version at the time (entries.revision)
        purpose TEXT NOT NULL,  -- canonical purpose at the time: with collection, the access key
        deleted INTEGER NOT NULL,  -- 1: a tombstone (deleted, or moved to another collection)
        changed_at TEXT NOT NULL,
        current INTEGER NOT NULL DEFAULT 1,  -- 1 until a later change of the entry in this collection
        PRIMARY KEY (collection, seq)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS changes_current ON changes (collection, seq) WHERE current = 1",
    "CREATE INDEX IF NOT EXISTS changes_entry ON changes (entry_id, collection) WHERE current = 1",
)
# From schema 9 (store.migrations): where a time falls in a collection's log, for TAXII's added_after.
ADDED_INDEX = "CREATE INDEX IF NOT EXISTS changes_added ON changes (collection, changed_at)"


def append(
    conn: Connection,
    *,
    entry_id: int,
    collection: str,
    revision: int,
    purpose: str,
    deleted: bool,
    changed_at: str,
    first: bool = False,
) -> None:
    """Append a change and make it the entry's current row in ``collection``. Call inside a write
    transaction (``db.transaction``). ``first``: the entry was just inserted, so it has no earlier row to
    retire (one statement less per new entry).

    The next number is read by the insert itself, and nothing is read back: in a pipeline
    (``Connection.pipeline``) the statement costs PostgreSQL no round trip of its own.

    max(seq) + 1 is safe because writers go one at a time. SQLite's BEGIN IMMEDIATE takes the file's
    write lock before the first read. PostgreSQL's writers take the advisory lock in the statement that
    opens the transaction (``store.pg``, ``_BEGIN_WRITE``). Under READ COMMITTED every later statement,
    this one too, sees what the writer before us committed before it let go of that lock, and no other
    writer can insert before we commit. Folding the read into the insert changes none of that: the lock
    was taken before either. Were the lock ever missed, the primary key (collection, seq) would refuse
    the second of two equal numbers, and nothing would be silently overwritten."""
    if not first:
        conn.execute(
            "UPDATE changes SET current = 0 WHERE entry_id = ? AND collection = ? AND current = 1",
            (entry_id, collection),
        )
    conn.execute(
        "INSERT INTO changes (collection, seq, entry_id, revision, purpose, deleted, changed_at)"
        " SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ? FROM changes WHERE collection = ?",
        (collection, entry_id, revision, purpose, int(deleted), changed_at, collection),
    )
