"""Membership churn of an ejabberd member among ejabberd members: a runs Prosody, d and e run ejabberd,
whose non-public nodes use the ``authorize`` access model (RFC 8600 §8.3.4, ``xmpp.approvals``). The
ejabberd counterpart of ``tests/test_integration_churn.py``, with its harness, one scenario after the
other on the same consortium:

1. d rotates its key live in the middle of an AtomPub burst its bridge signs, while e publishes: every
   item, signed before or after the switch, is mirrored by a and e once, with the bytes it was signed
   with, and nothing is quarantined; then the old certificate is retired.
2. d leaves: a and e drop it from their registries (reload), which revokes it at their nodes and
   unsubscribes them from d's. d gets nothing new, the others go on, and nothing d still publishes
   reaches them; restarted, d keeps what it mirrored and both services refuse it. ejabberd holds every
   subscription request to an authorize node for its owner: once d's subscription is cancelled, each of
   its renewals is a new pending request, and d, unaware that it left, asked e's approval desk again at
   every check round. Its bridge now stops renewing where the service no longer lists it as a member
   (``xmpp.mirror.renews``): e's desk hears nothing more from d, but for the one request per node that
   d's first subscriptions make after a restart (INTEROP.md §6).

What each member must hold is counted exactly (``Ledger``), as in the Prosody churn test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

import pytest

from tests.integration import eventually, loopback_consortium
from tests.test_integration_churn import (
    NON_PUBLIC_NODES,
    Ledger,
    converge,
    go_on_without,
    leave,
    log_since,
    require_servers,
    revoked_at_the_sources,
    rotate_in_a_burst,
)
from xmppbridge.store import Store

pytestmark = pytest.mark.integration

HOSTS = {"a": 18, "d": 19, "e": 20}  # 127.0.<slot>.18-20; feeds 21010 + 20 * slot on
SERVERS = {"d": "ejabberd", "e": "ejabberd"}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """a, d and e running, each following the others, each having published one item per category."""
    require_servers()
    workdir = tmp_path_factory.mktemp("churn-ejabberd")
    consortium = loopback_consortium(workdir, HOSTS, feed_port_base=21010, discovery_interval=1.0,
                                     servers=SERVERS)
    consortium.write_files()
    try:
        consortium.start_servers()
        consortium.start_bridges(timeout=120)
        for name in SERVERS:  # their non-public nodes are authorize nodes, approved by their desks
            assert (f"approval active: non-public nodes on {consortium[name].pubsub_jid} use the authorize "
                    "access model") in log_since(consortium, name, 0)
        book = Ledger(consortium, workdir, set(HOSTS), {})
        converge(book)
        yield book
    finally:
        consortium.stop()


def test_an_ejabberd_member_rotates_its_key_in_the_middle_of_a_burst_and_nothing_is_lost(
        ledger: Ledger) -> None:
    ledger.step("rotate", after=None)
    rotate_in_a_burst(ledger, "d", alongside="e")
    ledger.steps.append("rotate")


def desk_lines(ledger: Ledger, name: str, about: str, start: int) -> list[str]:
    """What member ``name``'s approval desk logged about bridge ``about`` since ``start``."""
    return [line for line in log_since(ledger.consortium, name, start).splitlines()
            if f"approval {about} " in line or f"subscription request of {about} " in line]


def test_an_ejabberd_member_leaves_is_revoked_and_no_longer_asks_the_authorize_nodes_of_others(
        ledger: Ledger) -> None:
    ledger.step("leave", after="rotate")
    consortium = ledger.consortium
    d, e = consortium["d"], consortium["e"]
    since = {name: consortium.log_path(name).stat().st_size for name in "de"}
    leave(ledger, "d")
    go_on_without(ledger, "d")  # with a few of d's check rounds (1 s), each renewing what it follows
    # d's renewals of e's authorize nodes stopped: e's desk heard nothing from d since the leave.
    assert desk_lines(ledger, "e", d.bridge_jid, since["e"]) == []
    with closing(Store(e.store_path)) as store:
        assert [a for a in store.approvals() if a.jid == d.bridge_jid] == []
    d_log = log_since(consortium, "d", since["d"])
    for node in NON_PUBLIC_NODES:
        assert f"no longer renewing the subscription to {node} on {e.pubsub_jid}" in d_log, node
    # At the sources: a's Prosody and e's ejabberd refuse d. d, restarted, gets nothing new. Its first
    # subscription requests after the start are all that e's desk hears, once per node, held: that is how
    # a bridge outside a node's audience asks to be let in (xmpp.approvals), and d, unaware, cannot tell
    # that it was revoked before the service answers. None at its renewals: once d has stopped renewing,
    # another check round goes by without a word from d.
    services = [consortium[n].pubsub_jid for n in "ae"]
    restart = {name: consortium.log_path(name).stat().st_size for name in "de"}
    assert revoked_at_the_sources(ledger, "d") == {(service, node): (False, "forbidden")
                                                   for service in services for node in NON_PUBLIC_NODES}
    eventually(lambda: all(f"no longer renewing the subscription to {node} on {e.pubsub_jid}" in
                           log_since(consortium, "d", restart["d"]) for node in NON_PUBLIC_NODES),
               timeout=30, what="d, restarted, to stop renewing at e's nodes")
    time.sleep(2)  # the check interval is 1 s
    heard = desk_lines(ledger, "e", d.bridge_jid, restart["e"])
    assert len(heard) == len(NON_PUBLIC_NODES), heard
    for node in NON_PUBLIC_NODES:
        assert any(f"audit: approval {d.bridge_jid} on {node} held: not in the node's audience" in line
                   for line in heard), (node, heard)
    ledger.steps.append("leave")
