"""`xmppbridge store copy`: a member's SQLite store moved to PostgreSQL (and back) keeps every table, and
serves the same feed: the same pages, entries, documents, revisions, archives and ETags, link by link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_feed_support import ANALYST, BASE, client_for, iodef2, store_document
from tests.test_store import make_incident
from xmppbridge.cli import main
from xmppbridge.peers import Outcome
from xmppbridge.store import Store
from xmppbridge.store.copy import TABLES, copy_store
from xmppbridge.store.items import ItemRef, Refused, SignedItem
from xmppbridge.store.search import SearchQuery

SAMPLES = Path(__file__).resolve().parents[1] / "config" / "samples"
RESTRICTIONS = ("public", "partner", "need-to-know", "private", "default")


def fill(store: Store) -> None:
    """Something of everything a member's store holds after a while."""
    for sample in sorted(SAMPLES.glob("*.xml")):  # what the demo publishes
        store_document(store, sample.read_bytes())
    for n in range(12):
        restriction = RESTRICTIONS[n % len(RESTRICTIONS)]
        store_document(store, iodef2(f"COPY-{n}", restriction=restriction,
                                     description=f"Résumé {n} of a botnet"))
    store_document(store, iodef2("COPY-1", restriction="partner", description="a second revision"))
    store_document(store, iodef2("COPY-2", restriction="public", description="moved to public"))
    store.mark_deleted("pubsub.a.test", "iodef/need-to-know/mitigation", "csirt.example.org/COPY-3")
    pending = store.enqueue(
        SignedItem("iodef/public/other", "out-1", b"<p/>", make_incident(1), "2.0"),
        source="cli:x",
    )
    failed = store.enqueue(
        SignedItem("iodef/public/other", "out-2", b"<q/>", make_incident(2), "2.0"),
        source="cli:y",
    )
    store.mark_failed(failed, "forbidden")
    assert pending
    store.add_reject(
        Refused(
            "xmpp",
            "bad-signature",
            "digest mismatch",
            b"<x>\x00\xff</x>",
            ItemRef("pubsub.b.test", "iodef/public/other", "bad"),
        ),
    )
    store.record_subscribed("pubsub.b.test", "iodef/public/other")
    store.record_sync("pubsub.b.test", "iodef/public/other")
    store.set_state("connection", "stopped")
    store.record_peer("pubsub.b.test", Outcome(False, "remote-server-timeout", "no answer"))
    store.approval_requested("iodef/partner/other", "bridge.d.test")
    store.chat.subscribe("analyst@a.test", [("public", "other"), ("partner", "watch")])
    store.chat.set_paused("room@rooms.a.test", True)
    store.chat.set_cursors({"public": 3})


async def crawl(store: Store, other: Store) -> int:
    """Every feed URL reachable from the collections, fetched from both stores' feeds as an analyst:
    the same status, body and ETag each time. How many URLs were compared."""
    ours, theirs = await client_for(store), await client_for(other)
    try:
        queue = [f"/feeds/{r}" for r in RESTRICTIONS] + ["/search?q=botnet", "/search?q=resume"]
        seen: set[str] = set()
        while queue:
            path = queue.pop()
            if path in seen:
                continue
            seen.add(path)
            first = await ours.get(path, headers=ANALYST.headers)
            second = await theirs.get(path, headers=ANALYST.headers)
            body = await first.read()
            assert (first.status, body, first.headers.get("ETag")) == (
                second.status, await second.read(), second.headers.get("ETag")), path
            if first.content_type in ("application/atom+xml", "text/html"):
                for href in re.findall(rb'href="([^"]+)"', body):
                    url = href.decode().replace("&amp;", "&")
                    if url.startswith(BASE) and "/login" not in url:
                        queue.append("/" + url[len(BASE):])
        return len(seen)
    finally:
        await ours.close()
        await theirs.close()


async def test_a_copy_to_postgresql_has_every_row_and_serves_the_same_feed(tmp_path: Path,
                                                                          pg_store_url: str) -> None:
    with Store(tmp_path / "member.sqlite") as source, Store(pg_store_url) as target:
        fill(source)
        copied = copy_store(source, target)
        assert [c.table for c in copied] == [*(t for t, _, _ in TABLES), "entries_fts"]
        assert all(c.ok and c.source > 0 for c in copied), [c for c in copied if not c.ok or not c.source]
        assert await crawl(source, target) > 50
        # New rows continue after the copied ids, on both sides alike.
        again = SignedItem("iodef/public/other", "out-3", b"<p/>", make_incident(3), "2.0")
        assert source.enqueue(again, source="cli:z") == target.enqueue(again, source="cli:z")
        text, everything = SearchQuery(text="resume"), {r: None for r in RESTRICTIONS}
        assert target.count_matches(text, everything, cap=100) == source.count_matches(text, everything,
                                                                                       cap=100) == 11
        assert target.chat.subscriptions("analyst@a.test") == {("public", "other"), ("partner", "watch")}
        assert target.chat.is_paused("room@rooms.a.test") and target.chat.cursors() == {"public": 3}
        assert [r.raw for r in target.rejects()] == [b"<x>\x00\xff</x>"]


async def test_and_back_from_postgresql_to_sqlite(tmp_path: Path, pg_store_url: str) -> None:
    with Store(tmp_path / "a.sqlite") as first, Store(pg_store_url) as middle, \
            Store(tmp_path / "b.sqlite") as last:
        fill(first)
        copy_store(first, middle)
        assert all(c.ok for c in copy_store(middle, last))  # full text rebuilt from the documents
        assert await crawl(first, last) > 50


def test_the_command_refuses_a_store_that_is_not_empty(tmp_path: Path, pg_store_url: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "member.sqlite"
    with Store(source) as store:
        fill(store)
    assert main(["store", "copy", "--from", str(source), "--to", pg_store_url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^entries\s+\d+\s+\d+\s+ok$", out, re.M) and "copied and verified" in out
    assert main(["store", "copy", "--from", str(source), "--to", pg_store_url]) == 1
    assert "is not empty (it has rows in entries" in capsys.readouterr().err
    assert main(["store", "copy", "--from", str(tmp_path / "missing.sqlite"), "--to", pg_store_url]) == 1
    assert "neither an SQLite file nor a postgresql:// URL" in capsys.readouterr().err
