"""A tree of two hubs on four real domains: spoke a -> hub h -> hub k -> spoke b, and back.

SCALING.md's plan for 700 members has regional hubs relaying to each other. Here hub h follows its
spoke a and hub k; k follows h and its spoke b; each hub relays what it gets from the other and from
its spoke (public and partner) to everyone reading its nodes. So what a publishes reaches b with three
signatures (a's, h's relay, k's relay), and what b publishes reaches a through k and h. Each hub also
gets its own relays back from the other one (k relays on to its nodes, which h follows, what h
relayed): it passes them over (``hub.OwnEcho``) instead of quarantining each one as ``unknown-signer``
(its own relay signature is by a certificate it does not trust as a peer's). a's private incident stops
at h. A retraction at a reaches b through both hubs.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from lxml import etree

from tests.hostile_corpus import iodef2
from tests.integration import eventually, loopback_consortium, running
from tests.pki import XMLSEC1, xmlsec1
from xmppbridge.demo.consortium import Consortium
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.model import NS_V2
from xmppbridge.signing.dsig import DS_SIGNATURE
from xmppbridge.signing.shape import signature_layout
from xmppbridge.store import Store
from xmppbridge.store.entries import Entry

pytestmark = pytest.mark.integration

HOSTS = {"a": 188, "h": 189, "k": 190, "b": 191}  # 127.0.<slot>.188-191; feeds 22100 + 20 * slot on
SHARED = ("public", "partner")
RELAYED = {"restrictions": list(SHARED), "to": "all"}


@pytest.fixture(scope="module", params=["prosody", "ejabberd"])
def tree(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    """The hubs on Prosody, then on ejabberd as the README advises (its non-public nodes are
    ``authorize``: each hub's subscriptions to the other's are held until that hub's bridge approves them)."""
    hubs = request.param
    for tool in ("prosody", str(XMLSEC1)):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    consortium = loopback_consortium(tmp_path_factory.mktemp(f"hub-tree-{hubs}"), HOSTS, feed_port_base=22100,
                                     discovery_interval=1.0, servers={"h": hubs, "k": hubs})
    everyone = {"partner": "all", "need-to-know": [], "private": []}
    consortium.write_files(
        subscriptions={"a": ["h"], "h": ["a", "k"], "k": ["h", "b"], "b": ["k"]},
        audiences={"a": {"partner": ["h"], "need-to-know": [], "private": ["h"]}, "h": everyone,
                   "k": everyone, "b": {"partner": ["k"], "need-to-know": [], "private": []}},
        extra={"h": {"relay": [{"from": ["a", "k"], **RELAYED}]},
               "k": {"relay": [{"from": ["h", "b"], **RELAYED}]}})
    with running(consortium):
        for spoke, restrictions in (("a", (*SHARED, "private")), ("b", SHARED)):
            documents = []
            for restriction in restrictions:
                path = consortium.workdir / f"{spoke}-{restriction}.xml"
                path.write_bytes(iodef2(f"TREE-{spoke}-{restriction}", name=f"csirt.{spoke}.test",
                                        restriction=restriction))
                documents.append(path)
            published = consortium.publish(spoke, *documents)
            assert published.returncode == 0, published.stderr
        yield consortium


def entries(consortium: Consortium, name: str) -> list[Entry]:
    with closing(Store(consortium[name].store)) as store:
        return store.entries(limit=1000)


def held_from(consortium: Consortium, spoke: str, hub: str) -> dict[str, Entry]:
    """Incident id -> the entry ``spoke`` mirrored from ``hub``'s service."""
    return {e.incident.id: e for e in entries(consortium, spoke) if e.service == f"pubsub.{hub}.test"}


def from_hub(consortium: Consortium, spoke: str, hub: str, want: set[str]) -> dict[str, Entry] | None:
    """``held_from``, once it holds ``want``."""
    held = held_from(consortium, spoke, hub)
    return held if held.keys() >= want else None


def incidents(spoke: str) -> set[str]:
    return {f"TREE-{spoke}-{restriction}" for restriction in SHARED}


def test_each_spoke_gets_the_others_items_through_both_hubs_once(tree: Consortium) -> None:
    at_b = eventually(lambda: from_hub(tree, "b", "k", incidents("a")), timeout=90,
                      what="b to hold a's public and partner incidents from k")
    at_a = eventually(lambda: from_hub(tree, "a", "h", incidents("b")), timeout=90,
                      what="a to hold b's public and partner incidents from h")
    assert at_b.keys() == incidents("a") and at_a.keys() == incidents("b")  # a's private one stopped at h
    for entry, chain in [*((e, ["a", "h", "k"]) for e in at_b.values()),
                         *((e, ["b", "k", "h"]) for e in at_a.values())]:
        assert [c.member for c in entry.custody] == chain, entry.incident.id
        assert [c.role for c in entry.custody] == ["originator", "relay", "relay"]
        # The last relay handed it over at a time the spoke knows; the hop before it left none.
        assert entry.custody[-1].at is not None and entry.custody[1].at is None
        assert entry.signer_subject.startswith(f"CN=CSIRT {chain[0].upper()} ")  # the originator
        assert entry.revision == 1
    for name in "ab":  # once each: nothing came another way; own items coming back were passed over
        ids = [e.incident.id for e in entries(tree, name)]
        assert len(ids) == len(set(ids)), ids


def test_a_hub_passes_over_its_own_relays_coming_back_from_the_other_hub(tree: Consortium) -> None:
    eventually(lambda: from_hub(tree, "b", "k", incidents("a")) and from_hub(tree, "a", "h", incidents("b")),
               timeout=90, what="both spokes to hold the other's incidents")
    for hub, other, own_relays in (("h", "k", incidents("a")), ("k", "h", incidents("b"))):
        held = [e for e in entries(tree, hub) if e.service == f"pubsub.{other}.test"]
        # From the other hub, only what that hub's spoke originated: its relays of ours came back and were
        # passed over (echoes), and no incident is held twice.
        assert {e.incident.id for e in held}.isdisjoint(own_relays), [e.incident.id for e in held]
        with closing(Store(tree[hub].store)) as store:
            reasons = [r.reason for r in store.rejects()]
        assert reasons == (["relay-refused"] if hub == "h" else []), reasons  # a's private incident, at h


def test_xmlsec1_verifies_all_three_signatures(tree: Consortium, tmp_path: Path) -> None:
    at_b = eventually(lambda: from_hub(tree, "b", "k", incidents("a")), timeout=90,
                      what="b to hold a's incidents from k")
    keys = tree.workdir / "keys"
    for incident_id, entry in at_b.items():
        root = etree.fromstring(entry.xml)
        layout = signature_layout(root, NS_V2)
        assert len(layout.relays) == 2
        # Last signer first: each signature covers the document as its signer saw it, so each relay's
        # AdditionalData is removed before the signature of the one who handed it on is checked.
        for signer, holder in (("k", None), ("h", layout.relays[1]), ("a", layout.relays[0])):
            if holder is not None:
                container = holder.getparent()
                container.getparent().remove(container)
            path = tmp_path / f"{incident_id}.{signer}.xml"
            path.write_bytes(etree.tostring(root))
            index = len(list(root.iter(DS_SIGNATURE)))
            result = xmlsec1("--verify", "--trusted-pem", keys / f"{signer}.crt",
                             "--node-xpath", f"(//*[local-name()='Signature'])[{index}]", path)
            assert result.returncode == 0, (signer, result.stderr)


def test_a_retraction_at_the_originator_reaches_the_far_spoke_through_both_hubs(tree: Consortium) -> None:
    eventually(lambda: from_hub(tree, "b", "k", incidents("a")), timeout=90, what="b to hold a's incidents")
    [own] = [e for e in entries(tree, "a") if e.incident.id == "TREE-a-partner"]
    retract(tree, "a", own)
    eventually(lambda: "TREE-a-partner" not in held_from(tree, "b", "k"), timeout=60,
               what="b to drop TREE-a-partner, retracted by a, then by h, then by k")
    assert "TREE-a-public" in held_from(tree, "b", "k")  # nothing else went


def retract(consortium: Consortium, name: str, own: Entry) -> None:
    """Member ``name`` retracts its entry ``own`` as an analyst would: AtomPub DELETE on its feed."""
    member = consortium[name]
    request = urllib.request.Request(FeedUrls(member.feed_url).entry(own.id), method="DELETE",
                                     headers=member.basic_auth())
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 204

