"""Schema version 5: each entry's current document is in ``documents``, not in the entry row, so that the
rows a feed page reads are small and share disk pages; a store of version 4 keeps every document."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.test_store_feed import (
    ALL,
    INDEXES_OF_8,
    INDEXES_OF_9,
    INDEXES_OF_12,
    document,
    entry_id,
    old_store,
    put,
    put_before_5,
)
from xmppbridge.store import Store, db, entries
from xmppbridge.store.db import SCHEMA_VERSION
from xmppbridge.store.search import SearchQuery

ODD = b'<?xml version="1.0" encoding="ISO-8859-1"?>\r\n<x>\xe9</x>\x00 \n'  # kept byte for byte


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM pragma_table_info(?)", (table,))]


def rows(conn: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.execute(sql)]


def test_a_new_store_keeps_documents_out_of_entry_rows(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        assert "xml" not in columns(store.conn, "entries")
        assert columns(store.conn, "documents") == ["entry_id", "xml"]
        put(store, 1, xml=b"<v1/>")
        assert put(store, 1, xml=ODD) == "updated"
        assert put(store, 1, xml=ODD) == "unchanged"  # compared with the document in its own table
        ident = entry_id(store, 1)
        assert rows(store.conn, "SELECT entry_id, xml FROM documents") == [(ident, ODD)]
        assert [v.xml for v in store.entry_versions(ident)] == [b"<v1/>"]
        found = store.find_entry("pubsub.a.test", "iodef/public/mitigation", "item-1")
        assert found is not None and found.xml == ODD
        assert store.entry(ident).xml == ODD  # type: ignore[union-attr]
        assert [e.xml for e in store.entries()] == [ODD]
        assert [r.entry.xml for r in store.revisions(ident)] == [ODD, b"<v1/>"]
        assert store.revision_xml(ident, 2) == ODD and store.revision_xml(ident, 1) == b"<v1/>"
        # pages and searches never load documents
        assert store.current_page("public", None, limit=10)[0].entry.xml == b""
        assert store.search(SearchQuery(), ALL, limit=10)[0].xml == b""


def test_a_version_4_store_keeps_every_document(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite"
    conn = old_store(path, 4)
    with db.transaction(conn):
        for n in range(1, 10):
            put_before_5(conn, n, document(f"incident {n}"), ("public", "private", "partner")[n % 3])
        put_before_5(conn, 3, ODD)  # revisions 2 and 3 of entry 3
        put_before_5(conn, 3, b"<third/>", title="third")
        entries.mark_deleted(conn, "pubsub.a.test", "iodef/public/mitigation", "item-6")
    keys = {row["id"]: (row["service"], row["node"], row["item_id"], row["revision"], bytes(row["xml"]))
            for row in conn.execute("SELECT * FROM entries")}
    superseded = rows(conn, "SELECT * FROM entry_versions ORDER BY id")
    v4_indexes = rows(conn, "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name")
    conn.close()

    with Store(path) as store:
        assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert "xml" not in columns(store.conn, "entries")
        assert rows(store.conn, "SELECT entry_id, xml FROM documents ORDER BY entry_id") == [
            (ident, key[-1]) for ident, key in sorted(keys.items())]
        for ident, (service, node, item_id, revision, xml) in keys.items():
            found = store.find_entry(service, node, item_id)
            assert found is not None and found.id == ident and found.xml == xml
            assert store.entry(ident).xml == xml  # type: ignore[union-attr]
            assert store.revision_xml(ident, revision) == xml
            assert store.revisions(ident)[0].entry.xml == xml
        assert [r.entry.xml for r in store.revisions(3)] == [b"<third/>", ODD, document("incident 3")]
        assert store.revision_xml(3, 2) == ODD
        assert {e.id: e.xml for e in store.entries(limit=100)} == {
            ident: key[-1] for ident, key in keys.items() if ident != 6}  # 6 is deleted
        assert rows(store.conn, "SELECT * FROM entry_versions ORDER BY id") == superseded
        added = INDEXES_OF_8 | INDEXES_OF_9 | INDEXES_OF_12
        assert [row for row in rows(store.conn, "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                                              " ORDER BY name") if row[0] not in added] == v4_indexes
        assert [e.incident.id for e in store.search(SearchQuery(text="incident"), ALL, limit=20)] == [
            f"INC-{n}" for n in (9, 8, 7, 5, 4, 2, 1)]  # 3 has new text, 6 is deleted
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        default = sqlite3.connect(":memory:").execute("PRAGMA secure_delete").fetchone()[0]
        assert store.conn.execute("PRAGMA secure_delete").fetchone()[0] == default  # restored
        assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert put(store, 10) == "new" and put(store, 1, xml=b"<after/>", restriction="private") == "updated"
        assert store.revision_xml(1, 2) == b"<after/>" and store.revision_xml(1, 1) == document("incident 1")


def test_the_upgrade_packs_entry_rows_onto_shared_pages(tmp_path: Path) -> None:
    """What version 5 is for. ``ALTER TABLE ... DROP COLUMN`` would leave each row alone on the page its
    document had filled; and the WAL file, as large as all the upgrade wrote, is truncated."""
    path = tmp_path / "v4.sqlite"
    conn = old_store(path, 4)
    with db.transaction(conn):
        for n in range(1, 41):
            put_before_5(conn, n, document(f"incident {n} " + "x" * 3000))
    conn.close()

    with Store(path) as store:
        leaves = "SELECT count(*) FROM dbstat WHERE name = ? AND pagetype = 'leaf'"
        assert store.conn.execute(leaves, ("entries",)).fetchone()[0] <= 40 // 5
        assert store.conn.execute(leaves, ("documents",)).fetchone()[0] == 40
        assert Path(f"{path}-wal").stat().st_size == 0
