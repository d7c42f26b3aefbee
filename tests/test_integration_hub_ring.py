"""A ring of three hubs on five real domains: spoke a at hub h, spoke b at hub k, and hubs h, k and m
each following and relaying the other two.

In a tree of hubs (tests/test_integration_hub_tree.py) each document reaches a hub by one way. In a ring
it comes by two: k gets a's item from h (relayed by h) and from m (relayed by h, then m). The second is
other bytes with another custody chain, so k mirrors both; it relays only the first (``Hub.came_before``),
else b would get every item of a's twice, the second time as a revision 2 that changes nothing but the
custody. The same holds for a's update, and for m, which gets each item from h and from k.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import closing

import pytest

from tests.hostile_corpus import iodef2
from tests.integration import eventually, loopback_consortium, running
from tests.test_integration_hub_tree import entries, from_hub, held_from, retract
from xmppbridge.demo.consortium import Consortium
from xmppbridge.store import Store
from xmppbridge.store.entries import Entry

pytestmark = pytest.mark.integration

HOSTS = {"a": 192, "h": 193, "k": 194, "m": 195, "b": 196}  # 127.0.<slot>.192-196; feeds 22110 + 20 * slot on
SHARED = ("public", "partner")
HUBS = ("h", "k", "m")
QUIET = 3.0  # seconds without a change before the copies count as settled (``quiet``)
UPDATED = "Botnet C2 seen at 192.0.2.10, and now at 192.0.2.11"


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    if shutil.which("prosody") is None:
        pytest.fail("prosody is not installed: run `make test`, which installs it")
    consortium = loopback_consortium(tmp_path_factory.mktemp("hub-ring"), HOSTS, feed_port_base=22110,
                                     discovery_interval=1.0)
    everyone = {"partner": "all", "need-to-know": [], "private": []}
    spoke = {"need-to-know": [], "private": []}
    relayed = {"restrictions": list(SHARED), "to": "all"}
    consortium.write_files(
        subscriptions={"a": ["h"], "h": ["a", "k", "m"], "k": ["b", "h", "m"], "m": ["h", "k"], "b": ["k"]},
        audiences={"a": {"partner": ["h"], **spoke}, "b": {"partner": ["k"], **spoke},
                   **{hub: everyone for hub in HUBS}},
        extra={"h": {"relay": [{"from": ["a", "k", "m"], **relayed}]},
               "k": {"relay": [{"from": ["b", "h", "m"], **relayed}]},
               "m": {"relay": [{"from": ["h", "k"], **relayed}]}})
    with running(consortium):
        for name in "ab":
            publish(consortium, name, *(ring_document(name, r) for r in SHARED))
        yield consortium


def ring_document(spoke: str, restriction: str, description: str = "Botnet C2 seen at 192.0.2.10") -> bytes:
    return iodef2(f"RING-{spoke}-{restriction}", name=f"csirt.{spoke}.test", restriction=restriction,
                  description=description)


def publish(consortium: Consortium, name: str, *documents: bytes) -> None:
    paths = []
    for document in documents:
        path = consortium.workdir / f"{name}-{hashlib.sha256(document).hexdigest()[:12]}.xml"
        path.write_bytes(document)
        paths.append(path)
    result = consortium.publish(name, *paths)
    assert result.returncode == 0, result.stderr


def incidents(spoke: str) -> set[str]:
    return {f"RING-{spoke}-{restriction}" for restriction in SHARED}


Copies = dict[str, dict[str, int]]  # hub -> incident -> the revision of its own relayed copy


def copies(consortium: Consortium) -> Copies | None:
    """Each hub's own copies of both spokes' incidents, once every hub holds one of each and has published
    everything it queued; None before."""
    held: Copies = {}
    for hub in HUBS:
        with closing(Store(consortium[hub].store)) as store:
            if store.outbox_depth():
                return None
            held[hub] = {e.incident.id: e.revision for e in store.entries(limit=1000)
                         if e.service == f"pubsub.{hub}.test"}
        if not held[hub].keys() >= incidents("a") | incidents("b"):
            return None
    return held


def quiet(consortium: Consortium, done: Callable[[Copies], bool], *, timeout: float = 90.0) -> Copies:
    """``copies``, once ``done`` with them and unchanged for QUIET seconds. Which hub gets an item by which
    way first, and so which second ways are echoes it passes over (``hub.OwnEcho``) and which are copies it
    mirrors, depends on timing; no store records the echoes, so nothing there says every way has been
    heard. A relay on loopback takes tens of milliseconds: a second relay would show well inside QUIET."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        now = copies(consortium)
        if now != last:
            last, since = now, time.monotonic()
        elif now is not None and done(now) and time.monotonic() - since >= QUIET:
            return now
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for the hubs' copies to settle; last: {last}")


def ways(consortium: Consortium, hub: str, incident: str) -> list[str]:
    """The other hubs from which ``hub`` mirrored ``incident``."""
    return sorted(other for other in HUBS if other != hub and incident in held_from(consortium, hub, other))


def test_each_hub_relays_what_comes_by_two_ways_once(ring: Consortium) -> None:
    held = quiet(ring, lambda _: True)
    # Relayed once: a second relay of the same document would be its revision 2.
    assert held == {hub: dict.fromkeys(incidents("a") | incidents("b"), 1) for hub in HUBS}, held
    for incident in incidents("a") | incidents("b"):
        # Whatever the timing, some hub got it from both other hubs and mirrored both: without
        # ``Hub.came_before`` that hub would have relayed it twice.
        assert any(len(ways(ring, hub, incident)) == 2 for hub in HUBS), \
            {hub: ways(ring, hub, incident) for hub in HUBS}
    at_b = eventually(lambda: from_hub(ring, "b", "k", incidents("a")), timeout=60,
                      what="b to hold a's incidents from k")
    for incident in incidents("a"):
        entry = at_b[incident]
        assert entry.revision == 1, (incident, entry.revision)
        chain = [c.member for c in entry.custody]
        assert chain in (["a", "h", "k"], ["a", "h", "m", "k"]), chain  # whichever way came first
    for hub in HUBS:  # the second ways' copies are mirrored, not refused; a hub's own relays passed over
        with closing(Store(ring[hub].store)) as store:
            assert store.count_rejects() == 0, [(r.reason, r.message) for r in store.rejects()]
    ids = [e.incident.id for e in entries(ring, "b")]
    assert len(ids) == len(set(ids)), ids


def test_an_update_is_relayed_once_too(ring: Consortium) -> None:
    quiet(ring, lambda _: True)
    publish(ring, "a", ring_document("a", "partner", UPDATED))
    held = quiet(ring, lambda now: all(now[hub]["RING-a-partner"] >= 2 for hub in HUBS))
    assert {hub: held[hub]["RING-a-partner"] for hub in HUBS} == dict.fromkeys(HUBS, 2), held
    entry = eventually(lambda: updated(held_from(ring, "b", "k").get("RING-a-partner")), timeout=60,
                       what="b to hold a's update")
    assert entry.revision == 2 and UPDATED.encode() in entry.xml
    assert held_from(ring, "b", "k")["RING-a-public"].revision == 1


def updated(entry: Entry | None) -> Entry | None:
    return entry if entry is not None and entry.revision >= 2 else None


def test_a_retraction_reaches_the_far_spoke_whichever_way(ring: Consortium) -> None:
    eventually(lambda: held_from(ring, "b", "k").keys() >= incidents("a"), timeout=90,
               what="b to hold a's incidents")
    [own] = [e for e in held_from(ring, "a", "a").values() if e.incident.id == "RING-a-public"]
    retract(ring, "a", own)
    eventually(lambda: "RING-a-public" not in held_from(ring, "b", "k"), timeout=60,
               what="b to drop RING-a-public, retracted by a, then by h, then by k")
    assert "RING-a-partner" in held_from(ring, "b", "k")
