from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from xmppbridge.iodef.model import Incident
from xmppbridge.store import Store
from xmppbridge.store import incidents as incident_columns
from xmppbridge.store.db import SCHEMA_VERSION
from xmppbridge.store.items import ORIGINATOR, RELAY, Custodian, ItemRef, Refused, SignedItem, Signer
from xmppbridge.store.sqlite import BUSY_TIMEOUT_MS

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_incident(n: int = 1, restriction: str = "public", **changes: object) -> Incident:
    base = Incident(
        id_name="csirt.example.org",
        id=f"2024-{n:04d}",
        instance=None,
        restriction_raw=restriction,
        restriction=restriction,
        purpose="reporting",
        report_time=T0 + timedelta(hours=n),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def upsert(
    store: Store,
    n: int = 1,
    *,
    xml: bytes | None = None,
    restriction: str = "public",
    incident: Incident | None = None,
    service: str = "pubsub.a.test",
) -> str:
    return store.upsert_entry(
        service,
        SignedItem(
            f"iodef/{restriction}/reporting",
            f"item-{n}",
            xml if xml is not None else f"<doc n='{n}'/>".encode(),
            incident or make_incident(n, restriction),
            "2.0",
            Signer("CN=csirt.example.org", "ab" * 32),
        ),
        origin="remote",
    )


@pytest.fixture
def db_path(store_target: str) -> str:
    """The store's file or URL: every test here runs on SQLite and on PostgreSQL (conftest)."""
    return store_target


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """For what only SQLite has: pragmas, file locking."""
    return tmp_path / "store.sqlite"


@pytest.fixture
def store(db_path: str) -> Iterator[Store]:
    with Store(db_path) as s:
        yield s


# -- schema and connection -----------------------------------------------------------------------------


def test_open_sets_wal_busy_timeout_and_schema_version(sqlite_path: Path) -> None:
    store = Store(sqlite_path)
    db_path = sqlite_path
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # on once the schema is upgraded
    assert [tuple(r) for r in store.conn.execute("SELECT version FROM schema_version")] == [(SCHEMA_VERSION,)]
    Store(db_path).close()  # reopening does not add a second version row
    assert store.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
    store.close()


def test_every_incident_field_round_trips() -> None:
    """Guards the column mapping: a new Incident field must get a column."""
    fields = {f.name for f in dataclasses.fields(Incident)}
    assert fields == set(incident_columns.COLUMNS.values())


def test_incident_round_trip_through_columns(store: Store) -> None:
    full = Incident(
        id_name="csirt.example.org",
        id="2024/0001 ü",
        instance="part 2",
        restriction_raw="amber",
        restriction="need-to-know",
        purpose="ext-value",
        report_time=T0,
        generation_time=T0 + timedelta(seconds=1, microseconds=5),
        detect_time=T0 - timedelta(days=1),
        start_time=T0 - timedelta(days=2),
        end_time=T0 - timedelta(hours=3),
        title="Scan from 192.0.2.1",
        alternative_ids=(("other.example", "X-1"), ("third.example", "Y-2")),
        related_ids=(("csirt.example.org", "2023-0099"),),
        narrowest_restriction="private",
    )
    upsert(store, 1, incident=full, restriction="need-to-know")
    [entry] = store.entries()
    assert entry.incident == full
    assert entry.published_at == T0
    assert entry.received_at.tzinfo is UTC and entry.updated_at == entry.received_at


def test_stored_times_sort_as_text_even_for_odd_years() -> None:
    from xmppbridge.store.db import format_time, parse_time

    moments = [
        datetime(999, 1, 1, tzinfo=UTC),
        datetime(2024, 5, 1, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
    ]
    texts = [format_time(m) for m in moments]
    assert texts == sorted(texts) and len({len(t) for t in texts}) == 1
    assert [parse_time(t) for t in texts] == moments
    assert texts[0] == "0999-01-01T00:00:00.000000Z"


def test_naive_and_offset_times_are_stored_as_utc(store: Store) -> None:
    from datetime import timezone

    plus2 = timezone(timedelta(hours=2))
    upsert(
        store,
        1,
        incident=make_incident(
            1, report_time=datetime(2024, 5, 1, 14, 0, tzinfo=plus2), detect_time=datetime(2024, 5, 1, 12, 0)
        ),
    )
    incident = store.entries()[0].incident
    assert incident.report_time == T0 and incident.report_time.tzinfo is UTC
    assert incident.detect_time == T0


# -- entries -------------------------------------------------------------------------------------------


def test_entries_survive_reopen(db_path: str) -> None:
    with Store(db_path) as s:
        upsert(s, 1)
        s.add_reject(
            Refused(
                "xmpp",
                "bad-signature",
                "digest mismatch",
                b"\x00<raw/>\xff",
                ItemRef("pubsub.b.test", "iodef/public/watch", "x"),
            ),
        )
        s.enqueue(
            SignedItem("iodef/public/reporting", "i1", b"<p/>", make_incident(), "2.0"),
            source="cli:a.xml",
        )
    with Store(db_path) as s:
        assert [e.item_id for e in s.entries()] == ["item-1"]
        assert s.count_rejects() == 1 and s.rejects()[0].raw == b"\x00<raw/>\xff"
        assert s.outbox_depth() == 1


def test_upsert_is_idempotent_and_keeps_versions(store: Store) -> None:
    assert upsert(store, 1, xml=b"<v1/>") == "new"
    first = store.find_entry("pubsub.a.test", "iodef/public/reporting", "item-1")
    assert first is not None
    assert upsert(store, 1, xml=b"<v1/>") == "unchanged"
    assert store.find_entry("pubsub.a.test", "iodef/public/reporting", "item-1") == first

    changed = make_incident(1, title="now with a title", report_time=T0 + timedelta(days=30))
    assert upsert(store, 1, xml=b"<v2/>", incident=changed) == "updated"
    second = store.entry(first.id)
    assert second is not None
    assert second.xml == b"<v2/>" and second.incident.title == "now with a title"
    assert second.received_at == first.received_at
    assert second.published_at == first.published_at  # published stays fixed
    assert second.updated_at > first.updated_at

    assert upsert(store, 1, xml=b"<v3/>") == "updated"
    versions = store.entry_versions(first.id)
    assert [v.xml for v in versions] == [b"<v1/>", b"<v2/>"]
    assert versions[0].updated_at == first.updated_at
    assert store.count_entries() == 1


def test_same_item_on_another_service_is_another_entry(store: Store) -> None:
    assert upsert(store, 1) == "new"
    assert upsert(store, 1, service="pubsub.b.test") == "new"
    assert store.count_entries() == 2


def test_mark_deleted_hides_and_reappearing_item_undeletes(store: Store) -> None:
    upsert(store, 1, xml=b"<v1/>")
    assert store.mark_deleted("pubsub.a.test", "iodef/public/reporting", "item-1") is True
    assert store.mark_deleted("pubsub.a.test", "iodef/public/reporting", "item-1") is False
    assert store.mark_deleted("pubsub.a.test", "iodef/public/reporting", "nope") is False
    assert store.entries() == [] and store.count_entries() == 0
    entry = store.find_entry("pubsub.a.test", "iodef/public/reporting", "item-1")
    assert entry is not None and entry.deleted
    assert upsert(store, 1, xml=b"<v1/>") == "updated"
    assert store.count_entries() == 1 and store.entry_versions(entry.id) == []


def test_entries_order_paging_and_restriction_filter(store: Store) -> None:
    restrictions = ["public", "partner", "need-to-know", "private", "default"]
    for n in range(10):
        upsert(store, n, restriction=restrictions[n % 5])
    upsert(store, 0, xml=b"<changed/>")  # now the most recently updated

    assert [e.item_id for e in store.entries(limit=3)] == ["item-0", "item-9", "item-8"]
    assert [e.item_id for e in store.entries(limit=3, offset=3)] == ["item-7", "item-6", "item-5"]
    public = store.entries(restrictions=["public"])
    assert [e.item_id for e in public] == ["item-0", "item-5"]
    assert store.count_entries(["public"]) == 2
    assert store.count_entries({"public", "need-to-know"}) == 4
    assert {e.incident.restriction for e in store.entries(restrictions={"public", "need-to-know"})} == {
        "public",
        "need-to-know",
    }
    assert store.entries(restrictions=[]) == [] and store.count_entries([]) == 0
    assert store.count_entries() == 10


def test_filter_uses_the_narrowest_marking_inside_the_incident(store: Store) -> None:
    """A public Incident with a private part is filed as private (RFC 7970 §3.3.1: never expose more
    widely)."""
    mixed = make_incident(1, "public", narrowest_restriction="private")
    upsert(store, 1, incident=mixed)
    assert store.entries(restrictions=["public"]) == [] and store.count_entries(["public"]) == 0
    [entry] = store.entries(restrictions=["private"])
    assert entry.restriction == "private" and entry.incident.restriction == "public"
    assert entry.incident == mixed


@pytest.mark.parametrize(
    ("restriction", "narrowest", "expected"),
    [
        ("public", None, "public"),
        ("public", "partner", "partner"),
        ("private", "public", "private"),  # inconsistent Incident: never widen
        ("need-to-know", "default", "need-to-know"),
        ("public", "bogus", "private"),
    ],
)
def test_audience_is_the_narrower_marking(restriction: str, narrowest: str | None, expected: str) -> None:
    incident = make_incident(1, restriction, narrowest_restriction=narrowest)
    assert incident_columns.audience(incident) == expected


def test_upsert_rejects_unknown_origin(store: Store) -> None:
    with pytest.raises(ValueError):
        store.upsert_entry(
            "s",
            SignedItem("n", "i", b"<x/>", make_incident(), "2.0", Signer("", "")),
            origin="elsewhere",
        )
    assert store.count_entries() == 0


def test_indexes_exist(store: Store) -> None:
    listing = ("SELECT name FROM sqlite_master WHERE type = 'index'" if store.backend == "sqlite" else
               "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
    names = {row[0] for row in store.sql(listing)}
    assert {"entries_restriction_updated", "entries_updated", "entries_access", "changes_current"} <= names


# -- outbox --------------------------------------------------------------------------------------------


def test_outbox_lifecycle(store: Store) -> None:
    incident = make_incident(1, restriction="partner")
    first = store.enqueue(
        SignedItem(
            "iodef/partner/reporting",
            "i1",
            b"<signed-1/>",
            incident,
            "1.0",
            Signer("CN=us", "cd" * 32),
        ),
        source="cli:one.xml",
    )
    second = store.enqueue(
        SignedItem("iodef/public/reporting", "i2", b"<signed-2/>", make_incident(2), "2.0"),
        source="cli:two.xml",
    )
    assert store.outbox_depth() == 2
    assert [i.id for i in store.pending()] == [first, second]  # oldest first
    assert [i.id for i in store.pending(limit=1)] == [first]
    assert [i.id for i in store.pending(limit=1, exclude={first})] == [second]  # what the drain has

    item = store.outbox_item(first)
    assert item is not None
    assert (item.status, item.reason, item.published_at) == ("pending", None, None)
    assert item.source == "cli:one.xml"
    assert item.payload == b"<signed-1/>" and item.incident == incident
    assert store.entries() == []

    store.mark_published(first, service="pubsub.a.test")
    done = store.outbox_item(first)
    assert done is not None and done.status == "published" and done.published_at is not None
    assert done.service == "pubsub.a.test"
    entry = store.find_entry("pubsub.a.test", "iodef/partner/reporting", "i1")
    assert entry is not None
    assert (entry.origin, entry.xml, entry.version) == ("local", b"<signed-1/>", "1.0")
    assert entry.incident == incident
    assert (entry.signer_subject, entry.signer_fingerprint) == ("CN=us", "cd" * 32)

    store.mark_failed(second, "forbidden: not a publisher")
    failed = store.outbox_item(second)
    assert failed is not None and (failed.status, failed.reason) == ("failed", "forbidden: not a publisher")
    assert store.pending() == [] and store.outbox_depth() == 0
    assert store.outbox_item(999) is None
    with pytest.raises(LookupError):
        store.mark_published(999, service="pubsub.a.test")
    with pytest.raises(LookupError):
        store.mark_failed(999, "x")


def test_mark_published_is_atomic(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from xmppbridge.store import entries

    ident = store.enqueue(SignedItem("n", "i", b"<p/>", make_incident(), "2.0"), source="cli:x")

    def broken(*args: object, **kwargs: object) -> str:
        raise sqlite3.OperationalError("disk on fire")

    monkeypatch.setattr(entries, "_store", broken)  # the storing step of every upsert
    with pytest.raises(sqlite3.OperationalError):
        store.mark_published(ident, service="s")
    item = store.outbox_item(ident)
    assert item is not None and item.status == "pending"


def test_a_round_is_marked_with_as_many_reads_whatever_its_size(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Marking a round reads the store (on PostgreSQL: waits for a round trip, the writers' lock held) a
    fixed number of times, not once or twice per item: a read is a statement whose rows come back."""
    from xmppbridge.store.pg import PgConnection
    from xmppbridge.store.sql import SqliteConnection

    reads: list[str] = []
    for cls in (SqliteConnection, PgConnection):
        def counted(self: Any, sql: str, *args: Any, _execute: Any = cls.execute) -> Any:
            if sql.lstrip().upper().startswith("SELECT") or "RETURNING" in sql.upper():
                reads.append(sql)
            return _execute(self, sql, *args)
        monkeypatch.setattr(cls, "execute", counted)

    def marked(size: int, start: int) -> int:
        ids = [store.enqueue(SignedItem("n", f"i{n}", b"<p/>", make_incident(), "2.0"), source="t")
               for n in range(start, start + size)]
        store.mark_published(ids[0], service="s")  # an entry that exists already, beside new ones
        ids[0] = store.enqueue(SignedItem("n", f"i{start}", b"<p2/>", make_incident(), "2.0"), source="t")
        reads.clear()
        store.mark_published(*ids, service="s")
        return len(reads)

    few, many = marked(3, 0), marked(30, 100)
    assert few == many, f"{few} reads for a round of 3, {many} for 30"
    assert store.find_entry("s", "n", "i129") is not None


def test_a_round_marks_versions_of_one_item_in_order(store: Store) -> None:
    """One mark_published for a round of the drain: an item twice in it (a second version, a retraction
    after its publish) ends as its last outbox row says."""
    incident = make_incident()
    old = store.enqueue(SignedItem("n", "old", b"<old/>", incident, "2.0"), source="t")
    store.mark_published(old, service="s")
    round_ = [store.enqueue(SignedItem("n", "twice", b"<v1/>", incident, "2.0"), source="t"),
              store.enqueue(SignedItem("n", "new", b"<new/>", incident, "2.0"), source="t"),
              store.enqueue(SignedItem("n", "twice", b"<v2/>", incident, "2.0"), source="t"),
              store.enqueue(SignedItem("n", "old", b"", incident, "2.0"), source="t", action="retract"),
              store.enqueue(SignedItem("n", "old", b"<back/>", incident, "2.0"), source="t")]
    assert len(set(round_)) == 5  # each submit reports its own new id (on PostgreSQL read after COMMIT)
    store.mark_published(*round_, service="s")
    twice, new, back = (store.find_entry("s", "n", item_id) for item_id in ("twice", "new", "old"))
    assert twice is not None and (twice.xml, twice.revision) == (b"<v2/>", 2)
    assert [version.xml for version in store.entry_versions(twice.id)] == [b"<v1/>"]
    assert new is not None and (new.xml, new.revision) == (b"<new/>", 1)
    assert back is not None and not back.deleted and (back.xml, back.revision) == (b"<back/>", 2)


_STATE = "INSERT INTO bridge_state (key, value, updated_at) VALUES (?, 'v', '2024-01-01T00:00:00.000000Z')"


def test_a_statement_failing_in_a_pipelined_write_undoes_it(store: Store) -> None:
    """PostgreSQL reports a pipelined statement's error at the next read or at the pipeline's end, after
    later statements were sent: the write is still undone as a whole, and in a batch alone."""
    duplicate = pytest.raises(Exception, match="(?i)unique")  # sqlite3.IntegrityError, UniqueViolation
    with duplicate, store._sessions.write(pipelined=True) as conn:
        conn.execute(_STATE, ("k",))
        conn.execute(_STATE, ("k",))
    with store.batch():
        store.record_subscribed("pubsub.a.test", "n")  # kept: a write of its own
        with duplicate, store._sessions.write(pipelined=True) as conn:
            conn.execute(_STATE, ("j",))
            conn.execute(_STATE, ("j",))
    assert store.sql("SELECT count(*) FROM bridge_state WHERE key IN ('j', 'k')")[0][0] == 0
    assert store.sql("SELECT count(*) FROM subscriptions")[0][0] == 1
    upsert(store, 1)  # the store goes on
    assert store.count_entries() == 1


# -- concurrency ---------------------------------------------------------------------------------------


def test_second_connection_waits_for_the_write_lock(sqlite_path: Path) -> None:
    db_path = sqlite_path
    """A writer blocked by another connection's open transaction waits (busy_timeout) instead of failing."""
    with Store(db_path) as ours, Store(db_path) as theirs, Store(db_path) as reader:
        theirs.conn.execute("BEGIN IMMEDIATE")
        theirs.conn.execute(
            "INSERT INTO rejects (source, reason, message, raw, received_at)"
            " VALUES ('cli', 'r', 'm', x'00', '2024-01-01T00:00:00.000000Z')"
        )
        result: list[str] = []
        writer = threading.Thread(target=lambda: result.append(upsert(ours, 1)))
        writer.start()
        time.sleep(0.3)
        assert result == [] and writer.is_alive()  # still waiting for the lock
        assert reader.count_entries() == 0 and reader.count_rejects() == 0  # WAL: readers are not blocked
        theirs.conn.execute("COMMIT")
        writer.join(timeout=5)
        assert result == ["new"]
        assert ours.count_rejects() == 1 and theirs.count_entries() == 1


_CLI_WRITER = """
import sys
from datetime import UTC, datetime
from xmppbridge.iodef.model import Incident
from xmppbridge.store import Store
from xmppbridge.store.items import SignedItem
path, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
incident = Incident(id_name="x.example", id="1", instance=None, restriction_raw="public",
                    restriction="public", purpose="other", report_time=datetime(2024, 1, 1, tzinfo=UTC))
for i in range(count):
    with Store(path) as store:  # short-lived, like a CLI invocation
        store.enqueue(SignedItem("iodef/public/other", f"{tag}-{i}", b"<p/>", incident, "2.0"),
                      source=f"cli:{tag}")
"""


def test_concurrent_processes_and_long_lived_connection(db_path: str) -> None:
    n = 40
    with Store(db_path) as ours:
        procs = [
            subprocess.Popen([sys.executable, "-c", _CLI_WRITER, str(db_path), tag, str(n)])
            for tag in ("p1", "p2")
        ]
        for i in range(n):
            upsert(ours, i)
        for proc in procs:
            assert proc.wait(timeout=60) == 0
        assert ours.outbox_depth() == 2 * n
        assert ours.count_entries() == n
        expected = {f"{tag}-{i}" for tag in ("p1", "p2") for i in range(n)}
        assert {item.item_id for item in ours.pending(limit=1000)} == expected


def test_opening_a_postgresql_store_while_a_writer_works_does_not_deadlock(pg_store_url: str) -> None:
    """Opening a store runs the schema's idempotent DDL, whose CREATE INDEX IF NOT EXISTS locks each table
    against writers in turn. An opener that locked ``entries`` and waits for ``outbox`` while a writer
    holds ``outbox`` and wants ``entries`` (the outbox drain's mark_published) was a deadlock, which
    PostgreSQL broke by failing one of them: a CLI or a starting instance could fail, or the bridge's
    write. The opener takes the writers' lock before any table lock, so the two take turns."""
    import psycopg

    opened: list[object] = []
    with Store(pg_store_url) as ours, psycopg.connect(pg_store_url, autocommit=True) as probe:
        with ours.batch():
            # The outbox is locked against DDL until the batch ends.
            ours.enqueue(SignedItem("iodef/public/other", "x", b"<p/>", make_incident(), "2.0"),
                         source="test")
            opener = threading.Thread(target=lambda: opened.append(Store(pg_store_url).close()))
            opener.start()
            deadline = time.monotonic() + 10
            while not probe.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                    " AND wait_event_type = 'Lock'").fetchone()[0]:
                assert time.monotonic() < deadline, "the opener never waited"
                time.sleep(0.01)
            upsert(ours, 1)  # entries: the table the opener would have locked first
        opener.join(timeout=30)
        assert opened == [None]
        assert ours.count_entries() == 1 and ours.outbox_depth() == 1


# -- rejects -------------------------------------------------------------------------------------------


def test_rejects_keep_raw_bytes_newest_first(store: Store) -> None:
    raw = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<x>\xe9</x>\r\n\x00'
    first = store.add_reject(Refused("cli:a.xml", "malformed-xml", "not well-formed", raw))
    second = store.add_reject(
        Refused(
            "xmpp",
            "unknown-signer",
            "no trust anchor",
            b"<y/>",
            ItemRef("pubsub.b.test", "iodef/public/watch", "abc"),
        ),
    )
    assert store.count_rejects() == 2
    rejects = store.rejects()
    assert [r.id for r in rejects] == [second, first]
    assert rejects[1].raw == raw and rejects[1].service is None
    assert (rejects[0].node, rejects[0].item_id) == ("iodef/public/watch", "abc")
    assert rejects[0].received_at.tzinfo is UTC
    assert [r.id for r in store.rejects(limit=1)] == [second]


def test_closed_store_refuses_use(db_path: str) -> None:
    store = Store(db_path)
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.count_entries()


# -- custody of relayed documents (schema version 10) ---------------------------------------------------


def test_a_relayed_item_keeps_its_custody_chain_through_the_outbox_and_the_feed(store: Store) -> None:
    chain = (Custodian(ORIGINATOR, "CN=CSIRT A", "aa" * 32, T0, "cert-a"),
             Custodian(RELAY, "CN=Hub", "bb" * 32, T0 + timedelta(minutes=1), "hub"))
    item = SignedItem("iodef/public/reporting", "item-r", b"<doc r='1'/>", make_incident(7), "2.0",
                      Signer("CN=CSIRT A", "aa" * 32), chain)
    outbox_id = store.enqueue(item, source="relay:pubsub.a.test")
    assert store.outbox_item(outbox_id).custody == chain  # type: ignore[union-attr]
    store.mark_published(outbox_id, service="pubsub.h.test")
    [ours] = store.entries()
    assert ours.custody == chain and ours.signer_subject == "CN=CSIRT A"
    [change] = store.current_page("public", None, limit=10)
    assert change.entry.custody == chain  # what the feed renders from

    upsert(store, 8)  # straight from its originator: no chain stored, the signer stands alone
    direct = store.find_entry("pubsub.a.test", "iodef/public/reporting", "item-8")
    assert direct is not None and direct.custody == ()
