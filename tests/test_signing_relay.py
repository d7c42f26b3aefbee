"""Relay signatures: custody chains that keep the originator's signature and survive XMPP."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lxml import etree

from tests.pki import DATA, Member, make_member
from xmppbridge.errors import InputRejected
from xmppbridge.iodef.model import NS_V1, NS_V2
from xmppbridge.iodef.schema import schema_errors
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import TrustStore
from xmppbridge.signing.verify import verify_document, verify_wire

DS = "http://www.w3.org/2000/09/xmldsig#"
IODEF = Path(__file__).resolve().parent / "data" / "iodef"
DOCUMENTS = {"v2": IODEF / "iodef2-minimal.xml", "v1": DATA / "iodef1-two-incidents.xml"}


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Member]:
    directory = tmp_path_factory.mktemp("relay")
    return {name: make_member(directory, f"csirt-{name}", kind)
            for name, kind in (("a", "rsa"), ("b", "ec"), ("c", "ec"), ("mallory", "ec"))}


@pytest.fixture(scope="module")
def trust(members: dict[str, Member]) -> TrustStore:
    return TrustStore.from_certificates(m.identity.certificate for n, m in members.items() if n != "mallory")


def original(members: dict[str, Member], version: str = "v2") -> bytes:
    return sign_document(etree.parse(str(DOCUMENTS[version])).getroot(), members["a"].identity)


def reason(data: bytes, trust: TrustStore) -> str:
    with pytest.raises(InputRejected) as excinfo:
        verify_document(data, trust)
    return excinfo.value.reason


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_chain_names_originator_and_relays(version: str, members: dict[str, Member],
                                               trust: TrustStore) -> None:
    signed = original(members, version)
    relayed = relay_sign(relay_sign(signed, members["b"].identity), members["c"].identity)

    verified = verify_document(relayed, trust)
    assert [s.subject for s in verified.chain] == ["CN=csirt-a", "CN=csirt-b", "CN=csirt-c"]
    assert verified.presenter.subject == "CN=csirt-c" and verified.signer_subject == "CN=csirt-a"
    # What the originator signed is what the receiver uses, no matter how many hops.
    assert etree.tostring(verified.signed_root) == etree.tostring(verify_document(signed, trust).signed_root)
    # Still a valid IODEF document, still the wire form, and it survives an XMPP library's tree.
    assert schema_errors(etree.fromstring(relayed)) == []
    assert [s.subject for s in verify_wire(ET.fromstring(relayed), trust).chain][-1] == "CN=csirt-c"
    holders = [e.getparent() for e in etree.fromstring(relayed).iter(f"{{{DS}}}Signature")]
    assert [h.get("meaning") for h in holders] == ["signature", "relay-signature", "relay-signature"]
    parent = f"{{{NS_V2}}}IODEF-Document" if version == "v2" else f"{{{NS_V1}}}Incident"
    assert {h.getparent().tag for h in holders} == {parent}


def test_relay_signatures_cover_the_originators(members: dict[str, Member], trust: TrustStore) -> None:
    relayed = relay_sign(original(members), members["b"].identity)
    # Changing the content breaks the originator's signature first.
    assert reason(relayed.replace(b"2024-0002", b"2024-0666"), trust) == "bad-digest"
    # A relay signature taken from another document does not cover this one.
    other = relay_sign(original(members, "v1"), members["b"].identity)
    root, donor = etree.fromstring(relayed), etree.fromstring(other)
    [donor_relay] = [s for s in donor.iter(f"{{{DS}}}Signature")
                     if s.getparent().get("meaning") == "relay-signature"]
    root[-1][0] = copy.deepcopy(donor_relay)
    assert reason(etree.tostring(root), trust) == "bad-digest"


def test_an_untrusted_relay_is_refused(members: dict[str, Member], trust: TrustStore) -> None:
    relayed = relay_sign(original(members), members["mallory"].identity)
    assert reason(relayed, trust) == "unknown-signer"


@pytest.mark.parametrize(("change", "expected"), [
    # Extra content in a relay holder is covered by no originator: refuse it.
    (lambda r: r[-1].append(etree.Element(f"{{{NS_V2}}}Incident")), "signature-wrapping"),
    # The relay holder before the originator's: order is custody.
    (lambda r: r.insert(len(r) - 2, r[-1]), "signature-wrapping"),
    # A second originator-style signature next to the relay's.
    (lambda r: r.append(copy.deepcopy(r[-2])), "signature-wrapping"),
    # A relay signature hidden inside an Incident instead of trailing the originator's.
    (lambda r: r[0].append(r[-1]), "signature-wrapping"),
], ids=["extra-content", "relay-first", "second-originator", "relay-elsewhere"])
def test_only_originator_plus_trailing_relays_are_accepted(change, expected: str, members: dict[str, Member],
                                                            trust: TrustStore) -> None:
    root = etree.fromstring(relay_sign(original(members), members["b"].identity))
    change(root)
    assert reason(etree.tostring(root), trust) == expected


def test_relay_sign_refuses_what_it_cannot_vouch_for(members: dict[str, Member]) -> None:
    with pytest.raises(InputRejected) as excinfo:
        relay_sign(DOCUMENTS["v2"].read_bytes(), members["b"].identity)
    assert excinfo.value.reason == "signature-missing"
    with pytest.raises(InputRejected):
        relay_sign(b"<x/>", members["b"].identity)
