"""Restriction at the source: never publish to a node wider than the document, never relay need-to-know or
private items beyond the members the policy allows; relays keep the custody chain end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest
from lxml import etree

from tests.conftest import SAMPLES
from tests.hostile_corpus import MAX_BYTES, ec_identity, iodef2
from tests.test_store import make_incident
from xmppbridge.errors import InputRejected
from xmppbridge.paths.publish import prepare
from xmppbridge.paths.receive import receive_item
from xmppbridge.paths.relay import Relayer, Route, prepare_relay
from xmppbridge.policy.audiences import Audience
from xmppbridge.policy.nodes import check_publishable, check_relayable, node_restriction
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import SignerRef, SourceRule, TrustStore
from xmppbridge.signing.verify import verify_document
from xmppbridge.store import Store
from xmppbridge.store.items import ItemRef, SignedItem

A = ec_identity("CSIRT A", domains=("a.test",))
B = ec_identity("CSIRT B", domains=("b.test",))
TRUST = TrustStore.from_certificates([A.certificate, B.certificate])


@pytest.mark.parametrize(("node", "restriction", "ok"), [
    ("iodef/public/reporting", "public", True),
    ("iodef/need-to-know/reporting", "public", True),  # narrower than needed is fine
    ("iodef/private/watch", "need-to-know", True),
    ("iodef/public/reporting", "need-to-know", False),
    ("iodef/partner/reporting", "private", False),
    ("iodef/default/reporting", "need-to-know", False),
    ("csirt/iodef/need-to-know/mitigation", "need-to-know", True),  # a prefix with a slash
    ("iodef/everyone/reporting", "public", False),  # who reads that? refuse
    ("iodef-public", "public", False),
])
def test_check_publishable(node: str, restriction: str, ok: bool) -> None:
    incident = make_incident(restriction=restriction)
    if ok:
        check_publishable(node, incident)
    else:
        with pytest.raises(InputRejected) as excinfo:
            check_publishable(node, incident)
        assert excinfo.value.reason == "restriction-wider-than-node"


def test_the_narrowest_marking_inside_an_incident_decides() -> None:
    # A public Incident with a private part must not go to a public node (RFC 7970 §3.3.1).
    mixed = make_incident(restriction="public", narrowest_restriction="private")
    with pytest.raises(InputRejected):
        check_publishable("iodef/public/reporting", mixed)
    check_publishable("iodef/private/reporting", mixed)


def test_everything_the_publish_path_prepares_is_publishable() -> None:
    for sample in sorted(SAMPLES.glob("*.xml")):
        for item in prepare(sample.read_bytes(), prefix="iodef", identity=A, max_bytes=MAX_BYTES):
            check_publishable(item.node, item.incident)
            assert node_restriction(item.node) == item.incident.effective_restriction


@pytest.mark.parametrize(("restriction", "audience", "ok"), [
    ("public", {"bridge.z.test"}, True),
    ("white", {"bridge.z.test"}, True),
    ("partner", {"bridge.z.test"}, True),
    ("need-to-know", {"bridge.c.test"}, True),
    ("amber", {"bridge.c.test"}, True),
    ("need-to-know", {"bridge.c.test", "bridge.z.test"}, False),
    ("default", {"bridge.z.test"}, False),
    ("need-to-know", set(), True),
    ("private", {"bridge.c.test"}, False),
    ("red", set(), False),
])
def test_check_relayable(restriction: str, audience: set[str], ok: bool) -> None:
    allowed = {"bridge.c.test"}
    if ok:
        check_relayable(restriction, audience, allowed)
    else:
        with pytest.raises(InputRejected) as excinfo:
            check_relayable(restriction, audience, allowed)
        assert excinfo.value.reason == "relay-refused"


def relay(payload: bytes, *, audience: tuple[str, ...] = ("bridge.c.test",),
          received_on: str = "iodef/need-to-know/mitigation") -> SignedItem:
    readers = Audience(open=False, members=frozenset(audience), bridges=frozenset(audience))
    return prepare_relay(ItemRef("pubsub.a.test", received_on, "item"), payload,
                         Relayer(B, TRUST, "iodef", MAX_BYTES),
                         Route(audience=lambda _node: readers, allowed=("bridge.c.test",)))


def test_a_relayed_item_carries_its_custody_to_the_next_member(tmp_path: Path) -> None:
    original = sign_document(etree.fromstring(iodef2("R-1")), A)
    item = relay(original)
    assert (item.node, item.item_id) == ("iodef/need-to-know/mitigation", "csirt.a.test/R-1")
    assert [s.subject for s in verify_document(item.xml, TRUST).chain] == ["CN=CSIRT A", "CN=CSIRT B"]
    assert item.signer.subject == "CN=CSIRT A"  # trust in it rests on the originator's signature
    assert [(c.role, c.fingerprint) for c in item.custody] == [("originator", A.fingerprint),
                                                               ("relay", B.fingerprint)]

    # C subscribes to B. The subscription's signers name who may hand items to C from there: B.
    only_b = dataclasses.replace(TRUST, sources=MappingProxyType(
        {"pubsub.b.test": SourceRule(signers=(SignerRef.parse("CN=CSIRT B"),))}))
    with Store(tmp_path / "c.sqlite") as store:
        outcome = receive_item(store, only_b, ItemRef("pubsub.b.test", item.node, item.item_id), item.xml,
                               max_bytes=MAX_BYTES)
        assert outcome.accepted
        [entry] = store.entries()
        assert entry.signer_subject == "CN=CSIRT A"  # the originator, who speaks for csirt.a.test
        # Its custody: A (at the time its document states), then B (when C received it from B).
        assert [(c.role, c.subject) for c in entry.custody] == [("originator", "CN=CSIRT A"),
                                                                ("relay", "CN=CSIRT B")]
        assert entry.custody[0].at == entry.incident.published_time and entry.custody[1].at is not None
    only_a = dataclasses.replace(TRUST, sources=MappingProxyType(
        {"pubsub.b.test": SourceRule(signers=(SignerRef.parse("CN=CSIRT A"),))}))
    with Store(tmp_path / "c2.sqlite") as store:
        outcome = receive_item(store, only_a, ItemRef("pubsub.b.test", item.node, item.item_id), item.xml,
                               max_bytes=MAX_BYTES)
        assert outcome.status == "signer-not-allowed"


def test_relaying_respects_the_restriction() -> None:
    with pytest.raises(InputRejected) as excinfo:
        relay(sign_document(etree.fromstring(iodef2("R-2", restriction="private")), A),
              received_on="iodef/private/mitigation")
    assert excinfo.value.reason == "relay-refused"
    with pytest.raises(InputRejected) as excinfo:
        relay(sign_document(etree.fromstring(iodef2("R-3")), A), audience=("bridge.outsider.test",))
    assert excinfo.value.reason == "relay-refused"
    public = relay(sign_document(etree.fromstring(iodef2("R-4", restriction="public")), A),
                   audience=("bridge.outsider.test",), received_on="iodef/public/mitigation")
    assert public.node == "iodef/public/mitigation"


def test_a_relay_does_not_relay_what_it_relayed_before() -> None:
    with pytest.raises(InputRejected) as excinfo:
        relay(relay(sign_document(etree.fromstring(iodef2("R-6")), A)).xml)
    assert excinfo.value.reason == "relay-loop"


def test_a_relay_vouches_only_for_what_verifies() -> None:
    forged = sign_document(etree.fromstring(iodef2("R-5")), A).replace(b"192.0.2.10", b"192.0.2.66")
    with pytest.raises(InputRejected) as excinfo:
        relay(forged)
    assert excinfo.value.reason == "bad-digest"
