"""Failover of `xmppbridge run` on real federated Prosody (issue 16): two instances of a member over one
SQLite store. One holds the lease and acts; the other serves the feed and stands by; kill -9 of the
active one mid-burst, and the standby takes over: nothing lost, nothing twice.

A and B each run two instances (a1/a2, b1/b2). Bursts go through the real publish path into A's outbox;
A's active instance drains it, B's active instance mirrors.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import closing

import pytest

from tests.integration import eventually, loopback_consortium
from tests.test_integration_faults import RESTRICTIONS, Key, document
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.instances import Instance, instances
from xmppbridge.publish import Publisher
from xmppbridge.signing.keys import load_identity
from xmppbridge.store import Store

pytestmark = pytest.mark.integration

BURST = 1000
SLOT = int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))
FEED_PORT = 18561 + 20 * SLOT  # a and b's own (unused) ports; the instances' follow


class Pair:
    def __init__(self, consortium: Consortium) -> None:
        self.consortium = consortium
        self.a = instances(consortium, "a", 2, feed_port=FEED_PORT + 2, metrics_port=FEED_PORT + 1002)
        self.b = instances(consortium, "b", 2, feed_port=FEED_PORT + 4, metrics_port=FEED_PORT + 1004)

    def store(self, member: str) -> Store:
        return Store(self.consortium[member].store_path)


def active(group: list[Instance]) -> Instance:
    """The one instance of ``group`` that says it is active and ready; waits for it."""
    def ready() -> Instance | None:
        found = [i for i in group if i.running() and i.health().get("role") == "active"
                 and i.health().get("ready")]
        return found[0] if len(found) == 1 else None
    return eventually(ready, timeout=120, what="one active, ready instance")


def standby(group: list[Instance]) -> Instance:
    [other] = [i for i in group if i is not active(group)]
    return other


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    consortium = loopback_consortium(tmp_path_factory.mktemp("failover"), {"a": 122, "b": 123},
                                     feed_port_base=18561, discovery_interval=1.0)
    consortium.write_files(subscriptions={"a": [], "b": ["a"]})
    made = Pair(consortium)
    try:
        consortium.start_servers()
        for group in (made.a, made.b):
            group[0].start()
            active(group)  # the first takes the lease before the second starts
            group[1].start()
            group[1].wait_serving()
        yield made
    finally:
        for each in (*made.a, *made.b):
            each.stop()
        consortium.stop()


def submit_burst(pair: Pair, tag: str, count: int = BURST) -> set[Key]:
    a = pair.consortium["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    keys: set[Key] = set()
    with closing(pair.store("a")) as outbox:
        publisher = Publisher(outbox, identity, prefix="iodef", max_bytes=400_000)
        for i in range(count):
            for accepted in publisher.submit(document(f"{tag}-{i:05d}", RESTRICTIONS[i % 4]), source="test"):
                keys.add((accepted.item.node, accepted.item.item_id))
    return keys


def mirrored_at_b(pair: Pair, tag: str) -> list[Key]:
    with closing(pair.store("b")) as s:
        return [(e.node, e.item_id) for e in s.entries(limit=1_000_000)
                if e.service == "pubsub.a.test" and e.incident.id.startswith(tag)]


def outbox_depth(pair: Pair) -> int:
    with closing(pair.store("a")) as s:
        return s.outbox_depth()


def assert_converged(pair: Pair, tag: str, expected: set[Key]) -> None:
    eventually(lambda: outbox_depth(pair) == 0, timeout=180, interval=0.2, what="A's outbox to drain")
    eventually(lambda: set(mirrored_at_b(pair, tag)) >= expected, timeout=180, interval=0.5,
               what=f"B to mirror all of burst {tag}")
    at_b = mirrored_at_b(pair, tag)
    assert set(at_b) == expected
    assert len(at_b) == len(expected), "duplicates at B"
    with closing(pair.store("b")) as s:
        assert not [r for r in s.rejects(limit=10_000) if (r.node, r.item_id) in expected]
        # Each item stored once: one version, not one per delivery.
        revisions = {(e.node, e.item_id): e.revision for e in s.entries(limit=1_000_000)
                     if e.service == "pubsub.a.test" and e.incident.id.startswith(tag)}
    assert set(revisions.values()) == {1}


def test_two_runs_on_one_store_only_one_connects_the_other_serves_the_feed(pair: Pair) -> None:
    for group, member in ((pair.a, "a"), (pair.b, "b")):
        leader, waiting = active(group), standby(group)
        lead, stand = leader.health(), waiting.health()
        assert (lead["role"], lead["connected"], lead["instance"]) == ("active", True, leader.name)
        assert (stand["role"], stand["connected"], stand["ready"]) == ("standby", False, False)
        assert lead["active_instance"] == stand["active_instance"] == leader.name
        assert f'xmppbridge_active{{instance_name="{leader.name}"}} 1.0' in leader.metrics()
        assert f'xmppbridge_active{{instance_name="{waiting.name}"}} 0.0' in waiting.metrics()
        assert "standby: the lease" in waiting.log_tail(100_000)
        assert "took the lease" not in waiting.log_tail(100_000)
        # The standby answers feed reads from the shared store.
        with urllib.request.urlopen(waiting.feed_url + "feeds/public", timeout=10) as response:
            assert response.status == 200
        report = subprocess.run([sys.executable, "-m", "xmppbridge.cli", "status", "-c",
                                 str(pair.consortium[member].config_path)],
                                capture_output=True, text=True, timeout=60)
        assert f"active instance: {leader.name} (since " in report.stdout, report.stdout + report.stderr


def test_kill_9_of_the_mirroring_instance_mid_burst(pair: Pair) -> None:
    expected = submit_burst(pair, "F1")
    eventually(lambda: len(mirrored_at_b(pair, "F1")) >= 100, timeout=120, interval=0.05,
               what="B to start mirroring")
    killed, heir = active(pair.b), standby(pair.b)
    killed.stop(kill=True)
    assert len(mirrored_at_b(pair, "F1")) < len(expected)
    assert active(pair.b) is heir
    assert_converged(pair, "F1", expected)
    killed.start()  # back as the standby
    assert killed.wait_serving()["role"] == "standby"


def test_kill_9_of_the_publishing_instance_mid_burst(pair: Pair) -> None:
    expected = submit_burst(pair, "F2")
    eventually(lambda: outbox_depth(pair) <= BURST - 100, timeout=120, interval=0.05,
               what="A to start publishing")
    killed, heir = active(pair.a), standby(pair.a)
    killed.stop(kill=True)
    assert outbox_depth(pair) > 0
    assert active(pair.a) is heir
    assert_converged(pair, "F2", expected)
    with closing(pair.store("a")) as s:
        published = [e for e in s.entries(limit=1_000_000) if e.origin == "local"
                     and e.incident.id.startswith("F2")]
    assert {(e.node, e.item_id) for e in published} == expected and {e.revision for e in published} == {1}
    killed.start()
    assert killed.wait_serving()["role"] == "standby"
