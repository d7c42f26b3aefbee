"""The outbox drain against a scripted server: several IQs in flight, yet per-item order kept.

The integration tests publish through real Prosody servers; here the server's timing is under the
test's control, so the orders that a real server produces only sometimes are forced.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import pytest
from slixmpp import Iq
from slixmpp.exceptions import IqError

from tests.test_feed_support import SERVICE, iodef2
from xmppbridge.errors import PublishFailed
from xmppbridge.iodef.document import read_document
from xmppbridge.policy.audiences import OPEN
from xmppbridge.policy.nodes import node_name
from xmppbridge.store import Store
from xmppbridge.store.items import SignedItem
from xmppbridge.xmpp import outbox as drain_module
from xmppbridge.xmpp.outbox import PUBLISH_WINDOW, OutboxDrain


class ScriptedServer:
    """What OutboxDrain needs of BridgeComponent; records what arrives, in arrival order."""

    def __init__(self, delay: Callable[[str, bytes], float] = lambda item_id, payload: 0.001) -> None:
        self.online = asyncio.Event()
        self.online.set()
        self.delay = delay
        self.failures: dict[bytes, list[PublishFailed]] = {}  # payload marker -> errors to raise, in turn
        self.arrived: list[tuple[str, str, bytes | None]] = []  # (node, item id, payload or None: retracted)
        self.in_flight = self.most_in_flight = 0

    async def ensure_node(self, *args: object, **kwargs: object) -> None:
        return None

    async def publish_bytes(self, service: str, node: str, item_id: str, payload: bytes) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay(item_id, payload))
            for marker, errors in self.failures.items():
                if marker in payload and errors:
                    raise errors.pop(0)
            self.arrived.append((node, item_id, payload))
        finally:
            self.in_flight -= 1

    async def retract(self, service: str, node: str, item_id: str) -> None:
        await asyncio.sleep(self.delay(item_id, b""))
        self.arrived.append((node, item_id, None))

    def versions(self, item_id: str) -> list[str]:
        """The description of each version of ``item_id`` in arrival order ("retracted" for a retraction)."""
        return ["retracted" if payload is None else payload.split(b"<Description>")[1].split(b"<")[0].decode()
                for _, arrived_id, payload in self.arrived if arrived_id == item_id]


@pytest.fixture
async def store(store_target: str) -> AsyncIterator[Store]:
    with Store(store_target) as store:
        yield store


def enqueue(store: Store, incident_id: str, description: str = "first", *, action: str = "publish") -> int:
    xml = iodef2(incident_id, description=description)
    document = read_document(xml)
    incident = document.incidents[0]
    return store.enqueue(
        SignedItem(
            node_name("iodef", incident.effective_restriction, incident.purpose),
            f"{incident.id_name}/{incident.id}",
            b"" if action == "retract" else xml,
            incident,
            document.version,
        ),
        source="test",
        action=action,
    )


async def drain_until_done(store: Store, server: ScriptedServer, outbox_ids: list[int]) -> None:
    config = SimpleNamespace(pubsub_service=SERVICE, node_prefix="iodef", node_audience=lambda node: OPEN,
                             max_document_bytes=400_000)
    task = asyncio.create_task(OutboxDrain(config, store, server).run())  # type: ignore[arg-type]
    try:
        for _ in range(1000):
            if all(store.outbox_item(i).status != "pending" for i in outbox_ids):  # type: ignore[union-attr]
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the outbox did not drain")
    finally:
        task.cancel()


async def test_several_publishes_are_in_flight_and_all_land(store: Store) -> None:
    ids = [enqueue(store, f"BULK-{n}") for n in range(100)]
    server = ScriptedServer(delay=lambda item_id, payload: 0.01)
    await drain_until_done(store, server, ids)
    assert server.most_in_flight == PUBLISH_WINDOW
    assert sorted(item_id for _, item_id, _ in server.arrived) == sorted(f"csirt.example.org/BULK-{n}"
                                                                         for n in range(100))
    assert {store.outbox_item(i).status for i in ids} == {"published"}  # type: ignore[union-attr]
    assert store.count_entries() == 100  # our own entries, stored in the same transaction


async def test_versions_of_one_item_reach_the_server_in_outbox_order(store: Store) -> None:
    rng = random.Random(3)
    ids = []
    for round_ in range(5):  # other items around every version, so that many are in flight beside it
        ids += [enqueue(store, f"OTHER-{round_}-{n}") for n in range(10)]
        ids.append(enqueue(store, "SAME", f"version{round_}"))
    # Later versions are answered faster: in flight together, they would arrive in reverse.
    server = ScriptedServer(delay=lambda item_id, payload: 0.05 / (1 + payload.count(b"version4") * 9)
                            if b"SAME" in payload else rng.uniform(0, 0.01))
    await drain_until_done(store, server, ids)
    assert server.versions("csirt.example.org/SAME") == [f"version{n}" for n in range(5)]
    assert store.find_entry(SERVICE, node_name("iodef", "public", "mitigation"),
                            "csirt.example.org/SAME").xml.count(b"version4") == 1  # type: ignore[union-attr]


async def test_a_version_waiting_to_be_retried_is_not_overtaken(store: Store,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain_module, "RETRY_DELAY", 0.05)
    first = enqueue(store, "FLAKY", "old")
    ids = [first, enqueue(store, "STEADY"), enqueue(store, "FLAKY", "new")]
    server = ScriptedServer()
    server.failures[b"old"] = [PublishFailed("busy", transient=True), PublishFailed("busy", transient=True)]
    await drain_until_done(store, server, ids)
    assert server.versions("csirt.example.org/FLAKY") == ["old", "new"]
    assert [item_id for _, item_id, _ in server.arrived][0] == "csirt.example.org/STEADY"  # others go on


async def test_a_refused_version_does_not_hold_back_the_next(store: Store) -> None:
    ids = [enqueue(store, "REFUSED", "bad"), enqueue(store, "REFUSED", "good")]
    server = ScriptedServer()
    server.failures[b"bad"] = [PublishFailed("not-acceptable", transient=False)]
    await drain_until_done(store, server, ids)
    assert [store.outbox_item(i).status for i in ids] == ["failed", "published"]  # type: ignore[union-attr]
    assert server.versions("csirt.example.org/REFUSED") == ["good"]


async def test_a_retraction_follows_the_publish_it_undoes(store: Store) -> None:
    ids = [enqueue(store, "GONE"), enqueue(store, "GONE", action="retract")]
    # The publish is slow and the retraction quick: sent together, the retraction would come first.
    server = ScriptedServer(delay=lambda item_id, payload: 0.05 if payload else 0.0)
    await drain_until_done(store, server, ids)
    assert server.versions("csirt.example.org/GONE") == ["first", "retracted"]
    entry = store.find_entry(SERVICE, node_name("iodef", "public", "mitigation"), "csirt.example.org/GONE")
    assert entry is not None and entry.deleted


async def test_going_offline_mid_round_keeps_the_rest_pending(store: Store) -> None:
    ids = [enqueue(store, f"LATE-{n}") for n in range(40)]
    server = ScriptedServer(delay=lambda item_id, payload: 0.01)
    original = server.publish_bytes

    async def drop_after_ten(service: str, node: str, item_id: str, payload: bytes) -> None:
        if len(server.arrived) >= 10:
            server.online.clear()
            iq = Iq()
            iq["type"] = "error"
            raise PublishFailed("connection lost", transient=True) from IqError(iq)
        await original(service, node, item_id, payload)

    server.publish_bytes = drop_after_ten  # type: ignore[method-assign]
    config = SimpleNamespace(pubsub_service=SERVICE, node_prefix="iodef", node_audience=lambda node: OPEN,
                             max_document_bytes=400_000)
    task = asyncio.create_task(OutboxDrain(config, store, server).run())  # type: ignore[arg-type]
    try:
        for _ in range(200):
            if not server.online.is_set() and server.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        statuses = [store.outbox_item(i).status for i in ids]  # type: ignore[union-attr]
        assert statuses.count("published") == len(server.arrived) >= 10
        assert "failed" not in statuses and "pending" in statuses
        server.online.set()  # back: the rest goes out at once, no retry delay for a lost connection
        server.publish_bytes = original  # type: ignore[method-assign]
        for _ in range(200):
            if all(store.outbox_item(i).status == "published" for i in ids):  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert len({item_id for _, item_id, _ in server.arrived}) == 40


async def test_an_unexpected_error_delays_its_item_not_the_drain(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(drain_module, "RETRY_DELAY", 0.05)
    ids = [enqueue(store, f"ODD-{n}") for n in range(20)]
    server = ScriptedServer()
    original = server.publish_bytes
    failures = [RuntimeError("database is locked")]

    async def trip_once(service: str, node: str, item_id: str, payload: bytes) -> None:
        if item_id.endswith("ODD-7") and failures:
            raise failures.pop()
        await original(service, node, item_id, payload)

    server.publish_bytes = trip_once  # type: ignore[method-assign]
    await drain_until_done(store, server, ids)
    assert {store.outbox_item(i).status for i in ids} == {"published"}  # type: ignore[union-attr]
    assert f"outbox item {ids[7]} failed unexpectedly" in caplog.text
    assert [item_id for _, item_id, _ in server.arrived][-1].endswith("ODD-7")  # the others went on


async def test_a_slow_publish_holds_back_neither_later_items_nor_their_marking(store: Store) -> None:
    slow = enqueue(store, "SLOW")
    server = ScriptedServer(delay=lambda item_id, payload: 30.0 if b"SLOW" in payload else 0.001)
    config = SimpleNamespace(pubsub_service=SERVICE, node_prefix="iodef", node_audience=lambda node: OPEN,
                             max_document_bytes=400_000)
    task = asyncio.create_task(OutboxDrain(config, store, server).run())  # type: ignore[arg-type]
    try:
        while server.in_flight == 0:
            await asyncio.sleep(0.01)
        later = [enqueue(store, f"LATER-{n}") for n in range(5)]  # while the slow one is on its way
        for _ in range(500):
            if all(store.outbox_item(i).status == "published" for i in later):  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        assert [store.outbox_item(i).status for i in later] == ["published"] * 5  # type: ignore[union-attr]
        assert store.outbox_item(slow).status == "pending" and server.in_flight == 1  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_items_sent_while_the_store_is_locked_are_marked_later(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(drain_module, "RETRY_DELAY", 0.05)
    ids = [enqueue(store, f"LOCKED-{n}") for n in range(5)]
    original = store.mark_published
    locked = [sqlite3.OperationalError("database is locked")]

    def mark_published(*outbox_ids: int, service: str) -> None:
        if locked:
            raise locked.pop()
        original(*outbox_ids, service=service)

    monkeypatch.setattr(store, "mark_published", mark_published)
    server = ScriptedServer()
    await drain_until_done(store, server, ids)
    assert {store.outbox_item(i).status for i in ids} == {"published"}  # type: ignore[union-attr]
    assert len(server.arrived) == 5  # marked later, not sent again
    assert "reading or marking the outbox failed" in caplog.text


async def test_nothing_new_is_sent_while_the_drain_is_held(store: Store) -> None:
    ids = [enqueue(store, f"HELD-{n}") for n in range(40)]
    server = ScriptedServer(delay=lambda item_id, payload: 0.005)
    config = SimpleNamespace(pubsub_service=SERVICE, node_prefix="iodef", node_audience=lambda node: OPEN,
                             max_document_bytes=400_000)
    drain = OutboxDrain(config, store, server)  # type: ignore[arg-type]
    with drain.held():
        task = asyncio.create_task(drain.run())
        await asyncio.sleep(0.3)
        assert server.arrived == [] and store.outbox_depth() == 40
    try:
        for _ in range(1000):
            if all(store.outbox_item(i).status == "published" for i in ids):  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        assert len(server.arrived) == 40
    finally:
        task.cancel()
