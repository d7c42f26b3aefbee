"""``xmppbridge store copy``: move a member's whole store to another backend (an SQLite file to PostgreSQL,
or back), history, quarantine, outbox and chat state included, and verify that every table arrived.

Rows keep their ids, so feed entry URLs, paging cursors (change-log sequence numbers) and ETags stay the
same: the copy serves the same feed. The full-text index is rebuilt in the target's own form
(``store.fulltext``) from the text the source indexed, or from the documents when the source cannot give
the text back (a PostgreSQL tsvector).

Both stores are opened (so both are at the current schema version) and the source is read in one write
transaction, which keeps a running bridge from changing it meanwhile; stop the bridge first all the same,
or what it receives while waiting goes to the old store only. The target must be empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from xmppbridge.store import fulltext
from xmppbridge.store.facade import Store
from xmppbridge.store.searchindex import description_text
from xmppbridge.store.sql import Connection, redact

# Every table of the schema in an order that satisfies the foreign keys, each with its sort key (the
# copy is in the source's order, so that it is deterministic) and whether its id is an identity column
# that PostgreSQL must be told about afterwards. entries_fts is rebuilt apart (fulltext).
TABLES: tuple[tuple[str, str, bool], ...] = (
    ("entries", "id", True),
    ("documents", "entry_id", True),
    ("entry_versions", "id", True),
    ("changes", "collection, seq", False),
    ("entry_ids", "entry_id, kind, name, value", False),
    ("entry_indicators", "entry_id, kind, value", False),
    ("entry_uuids", "uuid, entry_id", False),
    ("entry_indicator_lists", "entry_id", False),
    ("entry_objects", "key, entry_id", False),
    ("outbox", "id", True),
    ("rejects", "id", True),
    ("subscriptions", "service, node", False),
    ("bridge_state", "key", False),
    ("peers", "service", False),
    ("approvals", "node, jid", False),
    ("chat_subscriptions", "jid, restriction, purpose", False),
    ("chat_paused", "jid", False),
    ("chat_cursor", "collection", False),
)
_CHUNK = 1000


class CopyError(RuntimeError):
    pass


@dataclass(frozen=True)
class Copied:
    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


def copy_store(source: Store, target: Store, *, progress: Callable[[str, int], None] | None = None
               ) -> list[Copied]:
    """Copy every table of ``source`` into the empty ``target``; the row counts of both, per table (and
    ``entries_fts``), counted after the copy committed."""
    with source.transaction() as src, target.transaction() as dst:
        filled = [table for table, _, _ in TABLES if _count(dst, table)]
        if filled:
            raise CopyError(f"the target store {redact(target.path)} is not empty (it has rows in"
                            f" {', '.join(filled)});"
                            " copy into a new database or file")
        for table, order, identity in TABLES:
            done = 0
            for rows, columns in _chunks(src, table, order):
                marks = ", ".join("?" for _ in columns)
                dst.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
                done += len(rows)
                if progress is not None:
                    progress(table, done)
            if identity and dst.dialect.name == "postgresql":
                _continue_ids(dst, table, order)
        _copy_text(src, dst)
    with source.transaction() as src, target.transaction() as dst:
        return [Copied(table, _count(src, table), _count(dst, table))
                for table in (*(name for name, _, _ in TABLES), "entries_fts")]


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _chunks(conn: Connection, table: str, order: str) -> Iterator[tuple[list[tuple[Any, ...]], list[str]]]:
    with closing(conn.stream(f"SELECT * FROM {table} ORDER BY {order}")) as cursor:
        columns = [column[0] for column in cursor.description or ()]
        while rows := cursor.fetchmany(_CHUNK):
            yield [tuple(row) for row in rows], columns


def _continue_ids(conn: Connection, table: str, column: str) -> None:
    """New rows continue after the copied ids (the identity's sequence does not know about them)."""
    conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                 f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)")


def _copy_text(src: Connection, dst: Connection) -> None:
    """The Description text of every entry, indexed in the target's form."""
    if src.dialect.name == "sqlite":  # FTS5 keeps the text it indexed
        with closing(src.stream("SELECT rowid, description FROM entries_fts ORDER BY rowid")) as cursor:
            while rows := cursor.fetchmany(_CHUNK):
                for entry_id, text in rows:
                    fulltext.index(dst, entry_id, text, new=True)
        return
    with closing(src.stream("SELECT entry_id, xml FROM documents ORDER BY entry_id")) as cursor:
        while rows := cursor.fetchmany(_CHUNK):
            for entry_id, xml in rows:
                fulltext.index(dst, entry_id, description_text(bytes(xml)), new=True)
