"""A revision whose notification was lost on its way is found by the periodic checks, on real Prosody.

A revision keeps the item id of the version it replaces, so the listing a check reads is the same before
and after it: without a reconnection of B's own (whose catch-up fetches everything again), only the
check's sweep of what B holds (``xmpp.sweep``) finds it. The loss is made certain rather than left to a
race: with A's server stopped, its stored copy of some items is replaced by a signed revision, as if A had
published it and the notification had gone down with the server's queue.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from tests.integration import eventually, loopback_consortium, running
from tests.test_integration_federation import iodef2
from xmppbridge.demo.consortium import Consortium
from xmppbridge.paths.publish import Publisher, prepare
from xmppbridge.signing.keys import load_identity
from xmppbridge.store import Store

pytestmark = pytest.mark.integration

RESTRICTIONS = ("public", "partner", "need-to-know", "private")
Key = tuple[str, str]  # (node, item id)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    consortium = loopback_consortium(tmp_path_factory.mktemp("revisions"), {"a": 172, "b": 173},
                                     feed_port_base=18721, discovery_interval=1.0)
    consortium.write_files(subscriptions={"a": [], "b": ["a"]})
    with running(consortium):
        yield consortium


def held_at_b(pair: Consortium, keys: set[Key]) -> dict[Key, tuple[bytes, int]]:
    """(document, revision) of each of ``keys`` B holds."""
    with closing(Store(pair["b"].store_path)) as store:
        found = {key: store.find_entry("pubsub.a.test", *key) for key in keys}
    return {key: (entry.xml, entry.revision) for key, entry in found.items() if entry is not None}


def replace_on_a(pair: Consortium, key: Key, payload: bytes) -> None:
    """Replace item ``key``'s payload in A's stopped Prosody's storage (Prosody 0.12 keeps a node's
    items in the archive store ``pubsub_<node>``, one row per item id, the payload as XML text)."""
    node, item_id = key
    with closing(sqlite3.connect(pair["a"].prosody.workdir / "pubsub.sqlite", timeout=10)) as db, db:
        changed = db.execute("UPDATE prosodyarchive SET value = ? WHERE host = 'pubsub.a.test' AND user = ''"
                             " AND store = ? AND key = ?",
                             (payload.decode("utf-8"), f"pubsub_{node}", item_id)).rowcount
    assert changed == 1, f"no stored item {key} on A's server"


def test_a_revision_whose_notification_was_lost_is_found_by_the_checks(pair: Consortium) -> None:
    a = pair["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    keys: set[Key] = set()
    with closing(Store(a.store_path)) as outbox:
        publisher = Publisher(outbox, identity, prefix="iodef", max_bytes=400_000)
        for i in range(12):
            data = iodef2(f"LOST-{i:02d}", restriction=RESTRICTIONS[i % 4], description="First assessment")
            keys |= {(x.item.node, x.item.item_id) for x in publisher.submit(data, source="test")}
    eventually(lambda: len(held_at_b(pair, keys)) == len(keys), timeout=60, what="B to mirror the 12 items")
    reconnections = pair.log_path("b").read_text().count("connected to ")

    a.prosody.stop()
    revised: dict[Key, bytes] = {}
    for i in range(0, 12, 3):
        [item] = prepare(iodef2(f"LOST-{i:02d}", restriction=RESTRICTIONS[i % 4],
                                description="Revised: also 192.0.2.77"),
                         prefix="iodef", identity=identity, max_bytes=400_000)
        revised[(item.node, item.item_id)] = item.xml
        replace_on_a(pair, (item.node, item.item_id), item.xml)
    assert set(revised) < keys  # the same item ids
    a.prosody.start()

    def found() -> bool:
        held = held_at_b(pair, set(revised))
        return all(b"Revised: also 192.0.2.77" in xml for xml, _ in held.values())

    eventually(found, timeout=90, interval=0.5, what="B to find the four revisions")
    held = held_at_b(pair, keys)
    assert {key: revision for key, (_, revision) in held.items()} == \
        {key: 2 if key in revised else 1 for key in keys}
    assert all(b"First assessment" in xml for key, (xml, _) in held.items() if key not in revised)
    # B's own link to its server never dropped: the periodic checks found them, not a catch-up.
    assert pair.log_path("b").read_text().count("connected to ") == reconnections
