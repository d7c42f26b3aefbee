"""Nothing lost: bursts of documents across kills, restarts and outages, on real federated Prosody.

Every scenario ends with the same check: the set A published equals the set B mirrored, with no
duplicates. Bursts go through the real publish path (validate, sign, commit to A's outbox) in-process;
A's bridge process drains the outbox, B's bridge process mirrors.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.integration import eventually, loopback_consortium, running
from xmppbridge.demo.consortium import Consortium
from xmppbridge.paths.publish import Publisher
from xmppbridge.signing.keys import load_identity
from xmppbridge.store import Store

pytestmark = pytest.mark.integration

BURST = 2000
RESTRICTIONS = ("public", "partner", "need-to-know", "private")
Key = tuple[str, str]  # (node, item id)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    consortium = loopback_consortium(tmp_path_factory.mktemp("faults"), {"a": 52, "b": 53},
                                     feed_port_base=18281, discovery_interval=2.0)
    consortium.write_files(subscriptions={"a": [], "b": ["a"]})
    with running(consortium):
        yield consortium


def document(incident_id: str, restriction: str) -> bytes:
    return f"""<IODEF-Document version="2.00" xml:lang="en" xmlns="urn:ietf:params:xml:ns:iodef-2.0">
  <Incident purpose="mitigation" restriction="{restriction}">
    <IncidentID name="csirt.a.test">{incident_id}</IncidentID>
    <GenerationTime>2026-11-20T08:30:00Z</GenerationTime>
    <Description>Block 192.0.2.{len(incident_id) % 250} (fault-injection burst)</Description>
    <Contact role="creator" type="organization"><Email><EmailTo>csirt@a.test</EmailTo></Email></Contact>
  </Incident>
</IODEF-Document>""".encode()


def store(pair: Consortium, name: str) -> Store:
    return Store(pair[name].workdir / "data" / f"{name}.sqlite")


def publisher_at_a(pair: Consortium, outbox: Store) -> Publisher:
    """A's publish path into ``outbox`` (A's store), signing with A's key."""
    a = pair["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    return Publisher(outbox, identity, prefix="iodef", max_bytes=400_000)


def submit_burst(pair: Consortium, tag: str, count: int = BURST) -> set[Key]:
    """Commit ``count`` signed documents to A's outbox, as `xmppbridge publish` would."""
    keys: set[Key] = set()
    with closing(store(pair, "a")) as outbox:
        publisher = publisher_at_a(pair, outbox)
        for i in range(count):
            for accepted in publisher.submit(document(f"{tag}-{i:05d}", RESTRICTIONS[i % 4]), source="test"):
                keys.add((accepted.item.node, accepted.item.item_id))
    assert len(keys) == count
    return keys


def outbox_depth(pair: Consortium) -> int:
    with closing(store(pair, "a")) as s:
        return s.outbox_depth()


def wait_until_published(pair: Consortium, at_most: int, timeout: float = 180) -> None:
    eventually(lambda: outbox_depth(pair) <= at_most, timeout=timeout, interval=0.05,
               what=f"A's outbox to drain to {at_most}")


def published_at_a(pair: Consortium, tag: str) -> set[Key]:
    with closing(store(pair, "a")) as s:
        return {(e.node, e.item_id) for e in s.entries(limit=1_000_000)
                if e.origin == "local" and e.incident.id.startswith(tag)}


def mirrored_at_b(pair: Consortium, tag: str) -> list[Key]:
    with closing(store(pair, "b")) as s:
        return [(e.node, e.item_id) for e in s.entries(limit=1_000_000)
                if e.service == "pubsub.a.test" and e.incident.id.startswith(tag)]


def assert_converged(pair: Consortium, tag: str, expected: set[Key], timeout: float = 180) -> None:
    wait_until_published(pair, 0, timeout)
    eventually(lambda: set(mirrored_at_b(pair, tag)) >= expected, timeout=timeout, interval=0.5,
               what=f"B to mirror all of burst {tag}")
    at_b = mirrored_at_b(pair, tag)
    assert published_at_a(pair, tag) == expected
    assert set(at_b) == expected
    assert len(at_b) == len(expected), "duplicates at B"
    with closing(store(pair, "b")) as s:
        assert not [r for r in s.rejects(limit=10_000) if (r.node, r.item_id) in expected]


def test_kill_publishing_bridge_mid_burst(pair: Consortium) -> None:
    expected = submit_burst(pair, "K1")
    wait_until_published(pair, BURST - 300)
    pair.stop_bridge("a", kill=True)
    assert 0 < outbox_depth(pair) < BURST
    pair.start_bridge("a")
    assert_converged(pair, "K1", expected)


def test_kill_receiving_bridge_mid_burst(pair: Consortium) -> None:
    expected = submit_burst(pair, "K2")
    wait_until_published(pair, BURST - 300)
    pair.stop_bridge("b", kill=True)
    time.sleep(1)
    pair.start_bridge("b")
    assert_converged(pair, "K2", expected)


def test_restart_publishers_server_mid_burst(pair: Consortium) -> None:
    expected = submit_burst(pair, "R3")
    wait_until_published(pair, BURST - 300)
    pair["a"].prosody.stop()
    time.sleep(1)
    pair["a"].prosody.start()
    assert_converged(pair, "R3", expected)


def test_cut_s2s_by_stopping_receivers_server(pair: Consortium) -> None:
    expected = submit_burst(pair, "S4")
    wait_until_published(pair, BURST - 300)
    pair["b"].prosody.stop()
    wait_until_published(pair, BURST - 1200)  # A goes on publishing while B's domain is unreachable
    time.sleep(2)
    pair["b"].prosody.start()
    assert_converged(pair, "S4", expected)


def test_items_published_while_receiver_was_down(pair: Consortium, tmp_path: Path) -> None:
    pair.stop_bridge("b")
    expected = submit_burst(pair, "D5")
    wait_until_published(pair, 0)
    pair.start_bridge("b")
    assert_converged(pair, "D5", expected)


def deleted_at_b(pair: Consortium, keys: set[Key]) -> set[Key]:
    """Which of ``keys`` B holds as deleted (``entries()`` lists only what is not)."""
    with closing(store(pair, "b")) as s:
        found = {key: s.find_entry("pubsub.a.test", *key) for key in keys}
    assert None not in found.values(), "B lost entries altogether"
    return {key for key, entry in found.items() if entry is not None and entry.deleted}


def test_items_retracted_while_receiver_was_down(pair: Consortium) -> None:
    published = submit_burst(pair, "X6", 400)
    assert_converged(pair, "X6", published)
    pair.stop_bridge("b")
    with closing(store(pair, "a")) as outbox:
        publisher = publisher_at_a(pair, outbox)
        gone = [e for e in outbox.entries(limit=1_000_000) if e.origin == "local"
                and e.incident.id.startswith("X6") and int(e.incident.id.rsplit("-", 1)[1]) % 3 == 0]
        for entry in gone:
            publisher.retract(node=entry.node, item_id=entry.item_id, incident=entry.incident,
                              version=entry.version, source="test")
    retracted = {(e.node, e.item_id) for e in gone}
    wait_until_published(pair, 0)
    pair.start_bridge("b")  # ready = subscribed and caught up, retractions included
    assert deleted_at_b(pair, published) == retracted
    assert set(mirrored_at_b(pair, "X6")) == published - retracted  # the rest untouched


def test_items_revised_while_receiver_was_down(pair: Consortium) -> None:
    """A revision keeps the item id of the version it replaces (one id per IncidentID), so no listing
    shows it, and no periodic check fetches it. The catch-up after B's restart fetches what B holds
    again: B ends with the revisions, each once, and the rest untouched."""
    published = submit_burst(pair, "R7", 40)
    assert_converged(pair, "R7", published)
    pair.stop_bridge("b")
    revised: set[Key] = set()
    with closing(store(pair, "a")) as outbox:
        publisher = publisher_at_a(pair, outbox)
        for i in range(0, 40, 3):
            data = document(f"R7-{i:05d}", RESTRICTIONS[i % 4]).replace(b"(fault-injection burst)",
                                                                        b"(revised while B was away)")
            revised |= {(x.item.node, x.item.item_id) for x in publisher.submit(data, source="test")}
    assert revised < published  # the same item ids
    wait_until_published(pair, 0)
    pair.start_bridge("b")  # ready = subscribed and caught up
    with closing(store(pair, "b")) as s:
        found = {key: s.find_entry("pubsub.a.test", *key) for key in published}
    assert all(entry is not None and not entry.deleted for entry in found.values())
    now_revised = {key for key, entry in found.items() if entry and b"revised while B was away" in entry.xml}
    assert now_revised == revised
    assert {key: entry.revision for key, entry in found.items() if entry} == \
        {key: 2 if key in revised else 1 for key in published}
    assert sorted(mirrored_at_b(pair, "R7")) == sorted(published)  # once each


# Prosody 0.12 keeps each node's ``subscribers`` map as one JSON value of its ``pubsub_nodes`` store.
A_NODE_SUBSCRIBERS = "host = 'pubsub.a.test' AND store = 'pubsub_nodes' AND key = 'subscribers'"


def followed_by_b(pair: Consortium) -> set[str]:
    """The nodes of ``pubsub.a.test`` whose subscribers A's Prosody lists B among, read from its SQL
    storage."""
    with closing(sqlite3.connect(pair["a"].prosody.workdir / "pubsub.sqlite", timeout=10)) as db:
        rows = db.execute(f"SELECT user, value FROM prosody WHERE {A_NODE_SUBSCRIBERS}").fetchall()
    return {node for node, value in rows if value and "bridge.b.test" in json.loads(value)}


def forget_b_on_a(pair: Consortium) -> set[str]:
    """Remove B's subscriptions from A's stopped Prosody, as a server with non-persistent subscriptions
    (or an operator's cleanup) would: A's server comes back without them and tells nobody."""
    forgotten: set[str] = set()
    with closing(sqlite3.connect(pair["a"].prosody.workdir / "pubsub.sqlite", timeout=10)) as db, db:
        rows = db.execute(f"SELECT user, value FROM prosody WHERE {A_NODE_SUBSCRIBERS}").fetchall()
        for node, value in rows:
            subscribers = json.loads(value)
            if subscribers.pop("bridge.b.test", None) is not None:
                forgotten.add(node)
                db.execute(f"UPDATE prosody SET value = ? WHERE {A_NODE_SUBSCRIBERS} AND user = ?",
                           (json.dumps(subscribers), node))
    return forgotten


def test_subscriptions_forgotten_by_publishers_server_are_renewed(pair: Consortium) -> None:
    """A's server comes back without B's subscriptions; only B's periodic renewal (one XEP-0060 §5.6
    request per service, then a subscribe per missing node) can notice, since B's own link never dropped."""
    before = submit_burst(pair, "F7", 40)  # every node exists, and B follows it
    assert_converged(pair, "F7", before)
    followed = followed_by_b(pair)
    assert followed, "B follows none of A's nodes"
    pair["a"].prosody.stop()
    assert forget_b_on_a(pair) == followed
    pair["a"].prosody.start()
    assert followed_by_b(pair) == set()
    eventually(lambda: followed_by_b(pair) >= followed, timeout=60, interval=0.5,
               what="B to subscribe again to every node A forgot")
    after = submit_burst(pair, "F8", 400)
    assert_converged(pair, "F8", after)
