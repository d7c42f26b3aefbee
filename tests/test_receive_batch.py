"""A burst, one commit: the component hands the notifications it held to the sink inside one batch, and
``Store.batch`` commits its writes together while keeping each one atomic."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.test_store import make_incident, upsert
from xmppbridge.store import Store
from xmppbridge.store.items import SignedItem
from xmppbridge.xmpp.component import BridgeComponent
from xmppbridge.xmpp.servers import ServerAddress

EVENT_NS = "http://jabber.org/protocol/pubsub#event"


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None:
        self.events.append(("item", item_id))

    def on_retract(self, service: str, node: str, item_id: str) -> None:
        self.events.append(("retract", item_id))

    @contextmanager
    def batch(self) -> Iterator[None]:
        self.events.append("begin")
        yield
        self.events.append("end")


def notification(body: str) -> bytes:
    return (f"<message from='pubsub.a.test' to='bridge.b.test'><event xmlns='{EVENT_NS}'>"
            f"<items node='iodef/public/reporting'>{body}</items></event></message>").encode()


async def test_the_notifications_of_one_read_are_handed_over_in_one_batch() -> None:
    sink = RecordingSink()
    component = BridgeComponent("bridge.b.test", "secret", [ServerAddress("127.0.0.1", 5347)], sink)
    component.init_parser()
    component.data_received(b"<stream:stream xmlns='jabber:component:accept' "
                            b"xmlns:stream='http://etherx.jabber.org/streams' from='bridge.b.test' id='s1'>")
    sink.events.clear()
    component.data_received(notification("<item id='1'><x xmlns='urn:x'/></item>")
                            + notification("<item id='2'><x xmlns='urn:x'/></item>")
                            + notification("<retract id='1'/>"))
    # Nothing was stored lately, so at once; the read's own batch (for fetched items) stays empty.
    assert sink.events == ["begin", "end", "begin", ("item", "1"), ("item", "2"), ("retract", "1"), "end"]
    sink.events.clear()
    component.data_received(notification("<item id='3'><x xmlns='urn:x'/></item>"))
    component.data_received(notification("<item id='4'><x xmlns='urn:x'/></item>"))
    assert sink.events == ["begin", "end", "begin", "end"]  # held: something was just stored
    component.deliver_held()  # what the hold's timer does
    assert sink.events[4:] == ["begin", ("item", "3"), ("item", "4"), "end"]


def count_elsewhere(path: Path) -> int:
    """Entries as another process sees them: committed ones only."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    finally:
        conn.close()


def test_a_batch_commits_its_writes_together_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        with store.batch():
            upsert(store, 1)
            with store.batch():  # joins the outer batch
                upsert(store, 2)
            assert count_elsewhere(path) == 0
            assert store.count_entries() == 2  # the batch's own connection sees them at once
        assert count_elsewhere(path) == 2
        upsert(store, 3)  # after the batch, one transaction per write again
        assert count_elsewhere(path) == 3


def test_a_failing_write_in_a_batch_is_undone_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        good = store.enqueue(SignedItem("n", "i", b"<p/>", make_incident(), "2.0"), source="cli:x")
        with store.batch():
            upsert(store, 1)
            with pytest.raises(LookupError):
                store.mark_published(good, 999_999, service="s")  # marks `good`, then fails: all undone
            upsert(store, 2)
        assert count_elsewhere(path) == 2
        item = store.outbox_item(good)
        assert item is not None and item.status == "pending"


def test_a_batch_keeps_what_was_written_when_its_body_fails(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        with pytest.raises(RuntimeError), store.batch():
            upsert(store, 1)
            raise RuntimeError("a handler failed half-way through a read")
        assert count_elsewhere(path) == 1
        upsert(store, 2)  # the store is usable again: no transaction left open
        assert count_elsewhere(path) == 2


def test_a_batch_ends_quietly_when_the_store_was_closed_meanwhile(tmp_path: Path) -> None:
    """At shutdown the store closes while the server's last bytes are still being read."""
    store = Store(tmp_path / "s.sqlite")
    with store.batch():
        store.close()
    with pytest.raises(RuntimeError, match="closed"):
        upsert(store, 1)
