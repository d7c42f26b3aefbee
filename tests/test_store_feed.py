"""The store's feed side: change log, current pages, archives, revisions, search, schema migration."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.test_feed_support import store_document
from xmppbridge.iodef import stixids
from xmppbridge.iodef.indicators import of_document
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.iodef.model import Incident
from xmppbridge.iodef.parse import StoredDocument
from xmppbridge.iodef.uuids import incident_uuid
from xmppbridge.store import Store, changelog, db, entries, feedviews, incidents, migrations, searchindex
from xmppbridge.store.db import _SCHEMA, SCHEMA_VERSION
from xmppbridge.store.incidents import TIME_FIELDS
from xmppbridge.store.indicatorindex import IndicatorQuery
from xmppbridge.store.items import SignedItem, Signer
from xmppbridge.store.pg import PgBackend
from xmppbridge.store.search import SearchQuery, TimeRange
from xmppbridge.store.searchindex import description_text
from xmppbridge.store.sql import SQLITE, SqliteConnection

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ALL: dict[str, None] = {r: None for r in ("public", "partner", "need-to-know", "private", "default")}


def incident(n: int, restriction: str = "public", **changes: object) -> Incident:
    base = Incident(id_name="csirt.example.org", id=f"INC-{n}", instance=None, restriction_raw=restriction,
                    restriction=restriction, purpose="mitigation", report_time=T0 + timedelta(hours=n))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def document(description: str) -> bytes:
    return (f'<IODEF-Document xmlns="urn:ietf:params:xml:ns:iodef-2.0"><Incident>'
            f"<Description>{description}</Description><EventData><Description>nested words</Description>"
            f"</EventData></Incident></IODEF-Document>").encode()


def put(store: Store, n: int, *, xml: bytes | None = None, **changes: object) -> str:
    inc = incident(n, **changes)  # type: ignore[arg-type]
    return store.upsert_entry(
        "pubsub.a.test",
        SignedItem(
            f"iodef/{inc.restriction}/mitigation",
            f"item-{n}",
            xml if xml is not None else document(f"incident {n}"),
            inc,
            "2.0",
            Signer("CN=a", "00"),
        ),
        origin="remote",
    )


def entry_id(store: Store, n: int, restriction: str = "public") -> int:
    found = store.find_entry("pubsub.a.test", f"iodef/{restriction}/mitigation", f"item-{n}")
    assert found is not None
    return found.id


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    with Store(tmp_path / "s.sqlite") as opened:
        yield opened


@pytest.fixture
def store(store_target: str) -> Store:
    with Store(store_target) as opened:
        yield opened


# -- change log ----------------------------------------------------------------------------------------


def test_every_change_gets_the_next_sequence_number_of_its_collection(store: Store) -> None:
    for n in range(1, 4):
        put(store, n)
    put(store, 9, restriction="private")
    put(store, 1, xml=document("changed"))  # new revision of 1
    store.mark_deleted("pubsub.a.test", "iodef/public/mitigation", "item-2")

    assert store.last_seq("public") == 5 and store.last_seq("private") == 1 and store.last_seq("partner") == 0
    page = store.current_page("public", None, limit=10)
    assert [(c.seq, c.entry.incident.id, c.entry.deleted, c.entry.revision) for c in page] == [
        (5, "INC-2", True, 1),
        (4, "INC-1", False, 2),
        (3, "INC-3", False, 1),
    ]
    assert page[1].entry.xml == b""  # listings never load documents
    assert page[0].entry.updated_at > page[1].entry.updated_at


def test_writers_side_by_side_take_distinct_sequence_numbers(store_target: str) -> None:
    """Two stores on one database (two processes' connections) writing at once: the change log's next
    number, read by its own insert, never repeats nor skips, because writers hold the write lock."""
    with Store(store_target) as first, Store(store_target) as second:
        writers = [threading.Thread(target=lambda s=s, k=k: [put(s, 100 * k + n) for n in range(25)])
                   for k, s in enumerate((first, second), start=1)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=60)
        seqs = [row[0] for row in first.sql("SELECT seq FROM changes WHERE collection = ? ORDER BY seq",
                                            ("public",))]
    assert seqs == list(range(1, 51))


def test_archive_ranges_keep_every_change_as_it_was(store: Store) -> None:
    put(store, 1, title="first title")
    put(store, 2)
    put(store, 1, xml=document("v2"), title="second title")
    archive = store.archive("public", None, 1, 3)
    assert [(c.seq, c.entry.revision, c.entry.incident.title) for c in archive] == [
        (3, 2, "second title"),
        (2, 1, ""),
        (1, 1, "first title"),  # the Incident as it was, from entry_versions
    ]
    before = store.archive("public", None, 1, 2)
    put(store, 2, xml=document("v2 of 2"))
    store.mark_deleted("pubsub.a.test", "iodef/public/mitigation", "item-1")
    assert store.archive("public", None, 1, 2) == before  # closed ranges never change


def test_paging_cursors_and_purpose_filter(store: Store) -> None:
    for n in range(1, 8):
        put(store, n, purpose="watch" if n % 2 else "mitigation")
    seqs = [c.seq for c in store.current_page("public", None, limit=3)]
    assert seqs == [7, 6, 5]
    assert [c.seq for c in store.current_page("public", None, limit=3, before=5)] == [4, 3, 2]
    assert [c.seq for c in store.current_page("public", None, limit=3, after=2)] == [5, 4, 3]
    assert [c.seq for c in store.current_page("public", None, limit=3, after=0)] == [3, 2, 1]
    assert store.has_current("public", None, below=2) and not store.has_current("public", None, below=1)
    assert not store.has_current("public", None, above=7)
    assert [c.seq for c in store.current_page("public", {"watch"}, limit=10)] == [7, 5, 3, 1]
    assert store.current_page("public", set(), limit=10) == []


def test_moving_to_another_collection_leaves_a_tombstone(store: Store) -> None:
    put(store, 1)
    narrower = incident(1, narrowest_restriction="need-to-know")
    store.upsert_entry(
        "pubsub.a.test",
        SignedItem(
            "iodef/public/mitigation",
            "item-1",
            document("now with a secret"),
            narrower,
            "2.0",
            Signer("CN=a", "00"),
        ),
        origin="remote",
    )
    [gone] = store.current_page("public", None, limit=10)
    assert gone.entry.deleted and gone.entry.revision == 1
    [moved] = store.current_page("need-to-know", None, limit=10)
    assert not moved.entry.deleted and moved.entry.revision == 2


def test_revisions_are_numbered_and_keep_their_documents(store: Store) -> None:
    put(store, 1, xml=b"<v1/>")
    put(store, 1, xml=b"<v2/>", title="two")
    put(store, 1, xml=b"<v2/>", title="two")  # unchanged: no new revision
    ident = entry_id(store, 1)
    found = store.revisions(ident)
    assert [(r.entry.revision, r.entry.xml, r.superseded_at is None) for r in found] == [
        (2, b"<v2/>", True),
        (1, b"<v1/>", False),
    ]
    assert found[0].entry.incident.title == "two" and found[1].entry.incident.title == ""
    assert store.revision_xml(ident, 1) == b"<v1/>" and store.revision_xml(ident, 2) == b"<v2/>"
    assert store.revision_xml(ident, 3) is None and store.revisions(999) == []
    assert [v.number for v in store.entry_versions(ident)] == [1]


# -- search --------------------------------------------------------------------------------------------


def test_description_text_takes_every_description() -> None:
    assert description_text(document("Scan  from\n192.0.2.1")) == "Scan from 192.0.2.1\nnested words"
    assert description_text(b"<not xml") == ""


def test_search_criteria(store: Store) -> None:
    put(store, 1, alternative_ids=(("other.example", "ALT-1"),), detect_time=T0)
    put(store, 2, related_ids=(("csirt.example.org", "INC-1"),), purpose="watch",
        xml=document("Phishing wave against résumé portals"))
    put(store, 3, restriction="private", xml=document("Phishing in private"))

    def ids(readable: dict = ALL, **criteria: object) -> list[str]:  # type: ignore[type-arg]
        found = store.search(SearchQuery(**criteria), readable, limit=50)  # type: ignore[arg-type]
        return sorted(e.incident.id for e in found)

    assert ids() == ["INC-1", "INC-2", "INC-3"]
    assert ids(text="phishing") == ["INC-2", "INC-3"]
    assert ids(text="RESUME portals") == ["INC-2"]  # case and accents folded, all words required
    assert ids(text='phishing" OR "x') == []  # quotes are data, not query syntax
    assert ids(text="***") == []
    assert ids(incident_id="INC-2") == ["INC-2"]
    assert ids(alternative_id="ALT-1") == ["INC-1"]
    assert ids(related_id="INC-1") == ["INC-2"]
    assert ids(restrictions=frozenset({"private"})) == ["INC-3"]
    assert ids(purposes=frozenset({"watch"})) == ["INC-2"]
    assert ids(times=(TimeRange("detect_time", T0, T0),)) == ["INC-1"]
    assert ids(times=(TimeRange("report_time", start=T0 + timedelta(hours=2)),)) == ["INC-2", "INC-3"]
    assert ids(times=(TimeRange("report_time", end=T0 + timedelta(hours=1)),)) == ["INC-1"]
    # what the reader may not see is never found
    assert ids({"public": None}, text="phishing") == ["INC-2"]
    assert ids({"public": {"mitigation"}}) == ["INC-1"]
    assert ids({}) == []
    store.mark_deleted("pubsub.a.test", "iodef/public/mitigation", "item-1")
    assert ids() == ["INC-2", "INC-3"]
    assert store.count_matches(SearchQuery(), ALL, cap=10) == 2
    assert store.count_matches(SearchQuery(), ALL, cap=1) == 2  # counts at most cap + 1


def test_an_updated_entry_is_found_by_what_it_says_now(store: Store) -> None:
    put(store, 1, alternative_ids=(("other.example", "ALT-OLD"),), xml=document("ransomware wave"))
    put(store, 2, xml=document("ransomware too"))
    assert put(store, 1, alternative_ids=(("other.example", "ALT-NEW"),), xml=document("phishing wave")) == \
        "updated"

    def ids(**criteria: object) -> list[str]:
        return sorted(e.incident.id for e in store.search(SearchQuery(**criteria), ALL, limit=50))  # type: ignore[arg-type]

    assert ids(text="ransomware") == ["INC-2"]
    assert ids(text="phishing") == ["INC-1"]
    assert (ids(alternative_id="ALT-OLD"), ids(alternative_id="ALT-NEW")) == ([], ["INC-1"])
    current = store.sql("SELECT entry_id, revision FROM changes WHERE current = 1 ORDER BY seq")
    assert [tuple(row) for row in current] == [(entry_id(store, 2), 1), (entry_id(store, 1), 2)]


def test_time_range_field_is_checked() -> None:
    with pytest.raises(ValueError, match="report_time"):
        TimeRange("updated_at")


def test_queries_use_indexes(sqlite_store: Store) -> None:
    """Issue 7 benchmarks a million entries: every feed and search query must be answered by an index."""
    store = sqlite_store  # query plans are SQLite's
    plans = {
        "current page": "SELECT * FROM changes AS c WHERE c.collection = 'public' AND c.current = 1"
                        " AND c.seq < 10 ORDER BY c.seq DESC LIMIT 50",
        "incident id": "SELECT * FROM entries WHERE incident_id = 'x'",
        "report time": "SELECT * FROM entries WHERE report_time >= 'a' AND report_time <= 'b'",
        "alternative": "SELECT entry_id FROM entry_ids WHERE kind = 'alternative' AND value = 'x'",
    }
    for name, sql in plans.items():
        plan = " ".join(row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING" in plan and "SCAN" not in plan.replace("USING INDEX", ""), (name, plan)


def test_postgresql_plans_every_run_for_its_values(pg_store_url: str) -> None:
    """A read run again and again, which psycopg prepares on the server from its fifth run, never gets
    PostgreSQL's generic plan: the one the probe below got for other values scanned the whole change log
    (benchmark 4: 50 ms a page on a million entries, instead of 0.02 ms). Reads run outside write
    transactions, whose key lookups and inserts may keep generic plans (``store.pg``)."""
    with Store(pg_store_url) as store:
        for n in range(1, 4):
            put(store, n)
    backend = PgBackend(pg_store_url)
    try:
        with backend.connection() as conn:  # one of the pool's connections, configured as every one is
            for above in range(12):
                feedviews.has_current(conn, "public", None, above=above)
            generic, custom = conn.execute("SELECT sum(generic_plans), sum(custom_plans)"
                                           " FROM pg_prepared_statements").fetchone()
    finally:
        backend.close()
    assert generic == 0 and custom >= 7  # prepared from the fifth run on, planned for its values each time


# -- migration from older schema versions -------------------------------------------------------------


# What schema version 8 adds: chat's tables (with their primary keys' indexes), the quarantine's digest.
INDEXES_OF_8 = {"chat_subscriptions_category", "sqlite_autoindex_chat_cursor_1",
                "sqlite_autoindex_chat_paused_1", "rejects_digest"}
# Schema version 9: the indicator index (store.indicatorindex).
INDEXES_OF_9 = {"entry_indicators_value", "entry_indicators_low", "sqlite_autoindex_entry_indicators_1",
                "sqlite_autoindex_entry_uuids_1", "changes_added"}
# Schema version 12: the dashboard's (store.counts.INDEXES).
INDEXES_OF_12 = {"entries_received", "entries_arrivals", "outbox_published", "entries_counted"}


def old_store(path: Path, version: int) -> sqlite3.Connection:
    """A new file as an xmppbridge of schema ``version`` made it; the caller closes it."""
    conn = sqlite3.connect(path, isolation_level=None, factory=SqliteConnection)
    conn.row_factory = sqlite3.Row
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1)")
    with db.transaction(conn):
        migrations.upgrade(conn, version)
    return conn


def put_before_5(conn: sqlite3.Connection, n: int, xml: bytes, restriction: str = "public",
                 **changes: object) -> int:
    """What ``entries.upsert`` did in schema versions 2 to 4, with the document in the entry row: store
    entry ``n``, or a new revision of it. Its id."""
    inc = incident(n, restriction, **changes)
    key = ("pubsub.a.test", f"iodef/{restriction}/mitigation", f"item-{n}")
    old = conn.execute("SELECT * FROM entries WHERE service = ? AND node = ? AND item_id = ?", key).fetchone()
    stamp = db.later_than(None if old is None else old["updated_at"])
    fields = {**incidents.to_columns(inc), "xml": xml, "effective_restriction": incidents.audience(inc),
              "purpose_key": canonical_purpose(inc.purpose), "updated_at": stamp}
    if old is None:
        fields |= {"service": key[0], "node": key[1], "item_id": key[2], "origin": "remote", "version": "2.0",
                   "signer_subject": "CN=a", "signer_fingerprint": "00", "received_at": stamp,
                   "published_at": db.to_text(inc.published_time)}
        marks = ", ".join(f":{name}" for name in fields)
        entry_id = db.inserted_id(conn.execute(
            f"INSERT INTO entries ({', '.join(fields)}) VALUES ({marks}) RETURNING id", fields))
        revision = 1
    else:
        entry_id, revision = old["id"], old["revision"] + 1
        conn.execute("INSERT INTO entry_versions (entry_id, version, xml, signer_subject, signer_fingerprint,"
                     " updated_at, superseded_at, number, incident)"
                     " VALUES (?, '2.0', ?, 'CN=a', '00', ?, ?, ?, ?)",
                     (entry_id, old["xml"], old["updated_at"], stamp, old["revision"],
                      incidents.to_json(incidents.from_columns(old))))
        fields |= {"revision": revision, "id": entry_id}
        conn.execute(f"UPDATE entries SET {', '.join(f'{f} = :{f}' for f in fields)} WHERE id = :id", fields)
    changelog.append(conn, entry_id=entry_id, collection=fields["effective_restriction"], revision=revision,
                     purpose=fields["purpose_key"], deleted=False, changed_at=stamp)
    searchindex.index(conn, entry_id, StoredDocument(xml), inc)
    return entry_id


def test_a_version_3_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """Version 4 replaces the time indexes by covering ones and adds an access index; version 5 keeps
    them (tests/test_store_documents.py)."""
    path = tmp_path / "v3.sqlite"
    conn = old_store(path, 3)
    with db.transaction(conn):
        for n in range(1, 6):
            put_before_5(conn, n, document(f"incident {n}"), "private" if n % 2 else "public")
        entries.mark_deleted(conn, "pubsub.a.test", "iodef/private/mitigation", "item-5")
    v3_indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert "entries_report_time" in v3_indexes and "entries_access" not in v3_indexes

    with Store(path) as store:
        assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[0] for row in
                   store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert indexes == v3_indexes - {f"entries_{t}" for t in TIME_FIELDS} | {
            "entries_access", *(f"entries_{t}_covering" for t in TIME_FIELDS)} | INDEXES_OF_8 | INDEXES_OF_9 \
            | INDEXES_OF_12
        in_time = SearchQuery(times=(TimeRange("report_time", T0 + timedelta(hours=2)),))
        assert [e.incident.id for e in store.search(in_time, ALL, limit=10)] == ["INC-4", "INC-3", "INC-2"]
        assert store.count_matches(in_time, ALL, cap=100) == 3
        assert store.count_matches(SearchQuery(text="incident"), {"private": None}, cap=100) == 2
        assert store.current_page("private", None, limit=10)[0].entry.deleted  # the log is untouched
        put(store, 6)
        assert store.count_matches(SearchQuery(text="incident"), ALL, cap=100) == 5
        assert "COVERING INDEX entries_report_time_covering" in _count_plan(store, in_time, ALL)


def test_a_version_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1)")
    columns = ("service, node, item_id, origin, version, xml, signer_subject, signer_fingerprint, id_name,"
               " incident_id, restriction_raw, restriction, purpose, title, alternative_ids, related_ids,"
               " effective_restriction, received_at, updated_at, deleted_at")
    rows = [
        ("s", "n", "i1", "remote", "2.0", document("old phishing"), "", "", "x.example", "A", "public",
         "public", "ext-value", "", '[["y.example", "ALT"]]', "[]", "public", "2024-01-01T00:00:00.000000Z",
         "2024-01-02T00:00:00.000000Z", None),
        ("s", "n", "i2", "remote", "2.0", b"<x/>", "", "", "x.example", "B", "private", "private", "watch",
         "", "[]", "[]", "private", "2024-01-01T00:00:00.000000Z", "2024-01-03T00:00:00.000000Z",
         "2024-01-03T00:00:00.000000Z"),
    ]
    conn.executemany(f"INSERT INTO entries ({columns}) VALUES ({', '.join('?' * 20)})", rows)
    conn.execute("INSERT INTO entry_versions (entry_id, version, xml, signer_subject, signer_fingerprint,"
                 " updated_at, superseded_at) VALUES (1, '2.0', x'00', '', '', '2023-12-01T00:00:00.000000Z',"
                 " '2024-01-02T00:00:00.000000Z')")
    conn.commit()
    conn.close()

    with Store(path) as store:
        assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        [public] = store.current_page("public", None, limit=10)
        assert public.entry.revision == 2 and not public.entry.deleted
        assert store.current_page("public", {"other"}, limit=10) == [public]  # ext-value -> other
        [private] = store.current_page("private", None, limit=10)
        assert private.entry.deleted
        assert [e.incident.id for e in store.search(SearchQuery(text="phishing"), ALL, limit=5)] == ["A"]
        assert [e.incident.id for e in store.search(SearchQuery(alternative_id="ALT"), ALL, limit=5)] == ["A"]
        assert store.revision_xml(1, 1) == b"\x00"
        assert store.revision_xml(1, 2) == document("old phishing")  # through every step to version 5
        assert [(r.entry.revision, r.entry.xml) for r in store.revisions(1)] == [
            (2, document("old phishing")), (1, b"\x00")]
        assert store.find_entry("s", "n", "i2").xml == b"<x/>"  # type: ignore[union-attr]
    with Store(path) as again:  # reopening migrates nothing twice
        assert again.last_seq("public") == 1


def _count_plan(store: Store, query: SearchQuery, readable: dict) -> str:  # type: ignore[type-arg]
    from xmppbridge.store.search import _source_and_order, _where

    where, params = _where(SQLITE, query, readable)
    source, _ = _source_and_order(SQLITE, query, counting=True)
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {where} LIMIT 10001)"
    return " | ".join(row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params))


@pytest.mark.parametrize("query", [
    SearchQuery(),
    SearchQuery(text="phishing"),
    SearchQuery(restrictions=frozenset({"public"}), times=(TimeRange("report_time", T0, T0),)),
    SearchQuery(times=(TimeRange("end_time", T0),)),
])
def test_counting_reads_no_entry_rows(sqlite_store: Store, query: SearchQuery) -> None:
    """Counting up to the cap meets thousands of matches: the access columns must come from an index,
    not from entry rows spread over the table (issue 7)."""
    store = sqlite_store  # query plans are SQLite's
    plan = _count_plan(store, query, {"public": None, "private": {"watch"}})
    assert "COVERING INDEX" in plan and "PRIMARY KEY" not in plan, plan


@pytest.mark.parametrize("query", [
    SearchQuery(),
    SearchQuery(text="phishing"),
    SearchQuery(text="phishing", times=(TimeRange("report_time", T0),)),
    SearchQuery(times=(TimeRange("detect_time", T0, T0),)),
    SearchQuery(restrictions=frozenset({"private"}), purposes=frozenset({"watch"})),
])
def test_search_plans_need_no_statistics(sqlite_store: Store, query: SearchQuery) -> None:
    """Searches walk an index in result order and stop at the page size: no sorting of every match,
    and no reliance on ANALYZE (a new store has no statistics)."""
    store = sqlite_store  # query plans are SQLite's
    from xmppbridge.store.search import _source_and_order, _where

    where, params = _where(SQLITE, query, {"public": None, "private": {"watch"}})
    source, order = _source_and_order(SQLITE, query)
    sql = f"SELECT e.id FROM {source} WHERE {where} ORDER BY {order} LIMIT 50"
    plan = " | ".join(row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "TEMP B-TREE" not in plan and "entries_restriction_updated" not in plan, plan


def test_a_version_8_store_gets_the_indicators_of_every_entry(tmp_path: Path) -> None:
    """Version 9 indexes the indicators of the documents already stored (version 8 had no such table)."""
    path = tmp_path / "v8.sqlite"
    with Store(path) as store:
        for sample in sorted(SAMPLES.glob("0[1-4]*.xml")):
            store_document(store, sample.read_bytes())
        store.conn.execute("DROP TABLE entry_indicators")
        store.conn.execute("DROP TABLE entry_uuids")
        store.conn.execute("DROP TABLE entry_indicator_lists")  # what version 11 adds
        for table in ("entries", "outbox"):  # what version 10 adds (the custody chain)
            store.conn.execute(f"ALTER TABLE {table} DROP COLUMN custody")
        store.conn.execute("UPDATE schema_version SET version = 8")
    with Store(path) as store:
        assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        inside = SearchQuery(indicator=IndicatorQuery("192.0.2.0/24"))
        assert sorted(e.incident.id for e in store.search(inside, ALL, limit=10)) == [
            "A-2024-0102", "A-2024-0103", "A-2024-0104"]
        [held] = store.entries_holding(str(incident_uuid("csirt.a.test", "A-2024-0104")))
        assert held.incident.id == "A-2024-0104" and held.xml
        uuid = str(incident_uuid("csirt.a.test", "A-2024-0104"))
        assert store.live_holders(uuid, other_than="pubsub.x.test") == [held.id]
        assert store.live_holders(uuid, other_than=held.service) == []
        store.mark_deleted(held.service, held.node, held.item_id)
        assert store.live_holders(uuid, other_than="pubsub.x.test") == []


def test_a_version_10_store_gets_the_stored_indicators_of_every_entry(tmp_path: Path) -> None:
    """Version 11 stores each entry's indicators as extracted (for STIX without parsing), filled from the
    documents already stored: the same as parsing them gives."""
    path = tmp_path / "v10.sqlite"
    with Store(path) as store:
        stored = [store_document(store, s.read_bytes()) for s in sorted(SAMPLES.glob("0[1-4]*.xml"))]
        store.conn.execute("DROP TABLE entry_indicator_lists")
        store.conn.execute("UPDATE schema_version SET version = 10")
    with Store(path) as store:
        assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        documents = store.current_documents([e.id for e in stored])
        assert {e.id: documents[e.id].indicators for e in stored} == {e.id: of_document(e.xml)
                                                                       for e in stored}
        assert any(documents[e.id].indicators for e in stored)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_pages_documents_come_with_their_stored_indicators(backend: str, tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    """The exports' read of a page's documents brings each one's indicators as extracted, in document
    order with their role and expectation (schema 11), on both backends: what parsing gives."""
    url = tmp_path / "s.sqlite" if backend == "sqlite" else request.getfixturevalue("pg_store_url")
    with Store(url) as store:
        stored = [store_document(store, s.read_bytes()) for s in sorted(SAMPLES.glob("0[1-4]*.xml"))]
        documents = store.current_documents([e.id for e in stored])
    assert [documents[e.id].indicators for e in stored] == [of_document(e.xml) for e in stored]
    assert any(i.expectation for e in stored for i in documents[e.id].indicators or ())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_object_index_finds_the_entries_holding_each_stix_object(backend: str, tmp_path: Path,
                                                                    request: pytest.FixtureRequest) -> None:
    """store.objectindex on both backends: every object of an entry's indicators and its member's
    identity lead to the entry, within its collection and the purposes asked for, newest first; a
    store of schema 12 gets the index filled when it is upgraded."""
    url = tmp_path / "s.sqlite" if backend == "sqlite" else request.getfixturevalue("pg_store_url")
    with Store(url) as store:
        stored = [store_document(store, s.read_bytes()) for s in sorted(SAMPLES.glob("0[1-4]*.xml"))]

    def held(store: Store) -> dict[tuple[int, str], list[int]]:
        found = {}
        for entry in stored:
            incident = entry.incident
            ids = stixids.held_ids(incident.id_name, incident.id, of_document(entry.xml))
            for object_id in [*ids, stixids.identity_id(incident.id_name)]:
                holders = store.object_holders(object_id, entry.restriction, None, limit=100)
                assert holders == sorted(holders, reverse=True)
                found[entry.id, object_id] = holders
        return found

    with Store(url) as store:
        before = held(store)
        assert all(entry_id in holders for (entry_id, _), holders in before.items())
        assert any(len(ids) > 1 for ids in before.values())  # an identity, an address several name
        (entry_id, object_id), _ = next(iter(before.items()))
        entry = store.entry(entry_id)
        assert entry is not None
        purpose = canonical_purpose(entry.incident.purpose)
        assert entry_id in store.object_holders(object_id, entry.restriction, {purpose}, limit=100)
        assert store.object_holders(object_id, entry.restriction, {"no-such-purpose"}, limit=100) == []
        assert store.object_holders(object_id, "no-such-collection", None, limit=100) == []
        assert store.object_holders("ipv4-addr--not-a-uuid", entry.restriction, None, limit=100) == []
        store.sql("DROP TABLE entry_objects")
        store.sql("UPDATE schema_version SET version = 12")
    with Store(url) as store:
        assert store.sql("SELECT version FROM schema_version")[0][0] == SCHEMA_VERSION
        assert held(store) == before
