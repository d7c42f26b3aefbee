"""Signing and verifying IODEF documents: round trips through XMPP-style re-serialisation, and every way a
signature must be refused."""

from __future__ import annotations

import copy
import datetime
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from tests.pki import DATA, Member, identity_valid_between, make_member, signing_samples
from xmppbridge.errors import InputRejected, NotIodef, SignatureRejected, TooLarge, UnknownSigner, UnsafeXML
from xmppbridge.iodef.model import NS_V1, NS_V2
from xmppbridge.iodef.schema import schema_errors
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.verify import TrustStore, Verified, verify_document, verify_wire
from xmppbridge.signing.wireform import wire_bytes

DS = "http://www.w3.org/2000/09/xmldsig#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NOW = datetime.datetime.now(datetime.UTC)
SAMPLES = signing_samples()
MINIMAL_V1 = next(p for p in SAMPLES if p.name == "iodef1-minimal.xml")
MINIMAL_V2 = next(p for p in SAMPLES if p.name == "iodef2-minimal.xml")


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Member]:
    directory = tmp_path_factory.mktemp("members")
    return {kind: make_member(directory, f"csirt-{kind}.example", kind) for kind in ("rsa", "ec")}


@pytest.fixture(scope="module")
def trust(members: dict[str, Member]) -> TrustStore:
    return TrustStore.from_paths([m.cert_path for m in members.values()])


@pytest.fixture(params=["rsa", "ec"])
def member(request: pytest.FixtureRequest, members: dict[str, Member]) -> Member:
    return members[request.param]


def _load(path: Path) -> etree._Element:
    return etree.parse(str(path)).getroot()


def _signed(path: Path, member: Member) -> bytes:
    return sign_document(_load(path), member.identity)


def _mutate(signed: bytes, change: Callable[[etree._Element], object]) -> bytes:
    root = etree.fromstring(signed)
    change(root)
    return etree.tostring(root)


def _signature(root: etree._Element) -> etree._Element:
    return root.find(f".//{{{DS}}}Signature")


def _reason(data: bytes, trust: TrustStore, **kwargs: object) -> str:
    with pytest.raises(InputRejected) as excinfo:
        verify_document(data, trust, **kwargs)  # type: ignore[arg-type]
    return excinfo.value.reason


def _reprefixed(root: etree._Element) -> bytes:
    """The same infoset with other prefixes, as another XMPP hop might write it: ``ds:`` on the signature,
    ``ns1:`` for xsi attributes, attributes in reverse order."""

    def copy_into(src: etree._Element, parent: etree._Element | None) -> etree._Element:
        ns = etree.QName(src).namespace
        nsmap: dict[str | None, str] = {}
        if parent is None:
            nsmap[None] = ns
        if ns == DS and etree.QName(parent).namespace != DS:
            nsmap["ds"] = DS
        if any(etree.QName(name).namespace == XSI for name in src.attrib):
            nsmap["ns1"] = XSI
        new = (
            etree.Element(src.tag, nsmap=nsmap)
            if parent is None
            else etree.SubElement(parent, src.tag, nsmap=nsmap)
        )
        for name, value in reversed(src.attrib.items()):
            new.set(name, value)
        new.text, new.tail = src.text, src.tail
        for child in src:
            copy_into(child, new)
        return new

    return etree.tostring(copy_into(root, None))


def _pubsub_message(payload: bytes) -> bytes:
    """A pubsub event notification around ``payload``: other namespaces in scope of the document."""
    return (
        b'<message xmlns="jabber:client" from="pubsub.a.test" to="bridge.b.test" id="ev1">'
        b'<event xmlns="http://jabber.org/protocol/pubsub#event"><items node="iodef/public">'
        b'<item id="2024-0001">' + payload + b"</item></items></event></message>"
    )


# --- round trips ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sign_verify_round_trips(sample: Path, member: Member, trust: TrustStore) -> None:
    signed = _signed(sample, member)

    verified = verify_document(signed, trust)
    assert verified.signer_subject == member.identity.subject
    assert verified.signer_fingerprint == member.identity.fingerprint
    assert verified.certificate == member.identity.certificate

    # What we publish is still a valid IODEF document, signature included; so is what the receiver keeps
    # (the signed content, where the emptied AdditionalData stays behind).
    assert schema_errors(etree.fromstring(signed)) == []
    assert schema_errors(verified.signed_root) == []

    # slixmpp hands us xml.etree elements: no prefixes survive, only the namespace-aware tree.
    assert verify_wire(ET.fromstring(signed), trust).signer_fingerprint == member.identity.fingerprint
    assert wire_bytes(ET.fromstring(signed)) == signed  # the wire form is a fixed point

    # Another hop re-serialises with different prefixes, inside a pubsub <message>.
    moved = _pubsub_message(_reprefixed(etree.fromstring(signed)))
    item = ET.fromstring(moved).find(".//{http://jabber.org/protocol/pubsub#event}item")
    assert item is not None
    assert verify_wire(item[0], trust).signer_subject == member.identity.subject

    # An lxml element taken as-is out of the stanza: exclusive C14N ignores the ancestors' namespaces.
    item = etree.fromstring(_pubsub_message(signed)).find(".//{http://jabber.org/protocol/pubsub#event}item")
    item[0].tail = "text of the item after the document"
    assert verify_document(item[0], trust).signed_root.tag == etree.QName(_load(sample)).text


def test_indentation_added_in_transit_is_harmless(member: Member, trust: TrustStore) -> None:
    root = etree.fromstring(_signed(DATA / "iodef2-xsi-rich.xml", member))
    etree.indent(root)
    with pytest.raises(SignatureRejected):  # the bytes as they are no longer match ...
        verify_document(etree.tostring(root), trust)
    assert verify_wire(root, trust)  # ... but their wire form does


def test_signature_placement_v2(member: Member) -> None:
    signed = _signed(MINIMAL_V2, member)
    root = etree.fromstring(signed)
    holder = root[-1]
    assert holder.tag == f"{{{NS_V2}}}AdditionalData"
    assert dict(holder.attrib) == {"dtype": "xml", "meaning": "signature"}
    assert holder[0].tag == f"{{{DS}}}Signature" and len(holder) == 1
    # Default namespace on the signature, no prefixes anywhere: nothing for an XMPP server to rewrite.
    assert b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>' in signed
    assert b"ds:" not in signed
    signature = holder[0]
    assert signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}CanonicalizationMethod").get("Algorithm") == (
        "http://www.w3.org/2001/10/xml-exc-c14n#"
    )
    (reference,) = signature.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    assert reference.get("URI") == ""
    assert signature.find(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate") is not None
    assert signature.get("Id") is None  # the placeholder's Id is gone


def test_signature_placement_v1_goes_into_the_last_incident(member: Member, trust: TrustStore) -> None:
    signed = _signed(DATA / "iodef1-two-incidents.xml", member)
    root = etree.fromstring(signed)
    first, last = root.findall(f"{{{NS_V1}}}Incident")
    assert _signature(first) is None
    assert last[-1].get("meaning") == "signature" and last[-1][0].tag == f"{{{DS}}}Signature"
    assert last[-2].get("meaning") == "note"  # other AdditionalData stays
    assert schema_errors(root) == []
    # URI="" covers the first Incident too.
    tampered = signed.replace(b"2024-0101", b"2024-0666")
    assert _reason(tampered, trust) == "bad-digest"


def test_signing_does_not_touch_the_input(member: Member) -> None:
    root = _load(DATA / "iodef2-xsi-rich.xml")
    before = etree.tostring(root)
    sign_document(root, member.identity)
    assert etree.tostring(root) == before


def test_resigning_replaces_the_old_signature(members: dict[str, Member], trust: TrustStore) -> None:
    first = _signed(MINIMAL_V2, members["rsa"])
    again = sign_document(etree.fromstring(first), members["ec"].identity)
    assert len(etree.fromstring(again).findall(f".//{{{DS}}}Signature")) == 1
    assert verify_document(again, trust).signer_subject == members["ec"].identity.subject
    # A signature another implementation put in AdditionalData without meaning="signature" is replaced too.
    relabelled = _mutate(first, lambda root: root[-1].set("meaning", "xmldsig"))
    assert (
        len(
            etree.fromstring(sign_document(etree.fromstring(relabelled), members["ec"].identity)).findall(
                f".//{{{DS}}}Signature"
            )
        )
        == 1
    )


def test_signer_refuses_a_stray_signature_elsewhere(member: Member) -> None:
    root = _load(MINIMAL_V2)
    incident = root.find(f"{{{NS_V2}}}Incident")
    event = etree.SubElement(incident, f"{{{NS_V2}}}EventData")
    extra = etree.SubElement(event, f"{{{NS_V2}}}AdditionalData", dtype="xml")
    etree.SubElement(extra, f"{{{DS}}}Signature")
    with pytest.raises(InputRejected, match="already contains an XML signature") as excinfo:
        sign_document(root, member.identity)
    assert excinfo.value.reason == "signature-wrapping"


def test_signer_refuses_non_iodef(member: Member) -> None:
    with pytest.raises(NotIodef):
        sign_document(etree.fromstring(b"<IODEF-Document xmlns='urn:example'/>"), member.identity)


def test_verified_content_is_only_what_was_signed(member: Member, trust: TrustStore) -> None:
    signed = _signed(MINIMAL_V2, member)
    # A comment is not covered by exclusive C14N (without comments); it must not split what we read.
    commented = signed.replace(b">2024-0002<", b">2024-<!-- unsigned -->0002<")
    verified = verify_document(commented, trust)
    assert isinstance(verified, Verified)
    root = verified.signed_root
    assert root.findtext(f"{{{NS_V2}}}Incident/{{{NS_V2}}}IncidentID") == "2024-0002"
    assert not [node for node in root.iter() if not isinstance(node.tag, str)]  # no comments
    assert _signature(root) is None  # the enveloped signature is not part of the signed content


# --- rejections ----------------------------------------------------------------------------------------


def test_tampered_text_is_bad_digest(member: Member, trust: TrustStore) -> None:
    signed = _signed(MINIMAL_V2, member)
    with pytest.raises(SignatureRejected, match=r"changed after CN=csirt-.*signed it") as excinfo:
        verify_document(signed.replace(b"2024-0002", b"2024-0003"), trust)
    assert excinfo.value.reason == "bad-digest"
    assert _reason(signed.replace(b'restriction="amber"', b'restriction="white"'), trust) == "bad-digest"
    assert _reason(_mutate(signed, lambda root: root.append(copy.deepcopy(root[0]))), trust) == "bad-digest"


def test_swapped_signature_value_is_bad_signature(member: Member, trust: TrustStore) -> None:
    other = etree.fromstring(_signed(MINIMAL_V1, member))
    other_value = _signature(other).findtext(f"{{{DS}}}SignatureValue")

    def swap(root: etree._Element) -> None:
        _signature(root).find(f"{{{DS}}}SignatureValue").text = other_value

    assert _reason(_mutate(_signed(MINIMAL_V2, member), swap), trust) == "bad-signature"


def test_tampered_signed_info_is_bad_signature(member: Member, trust: TrustStore) -> None:
    # Changing the document and recomputing DigestValue is caught by the signature over SignedInfo.
    signed = _signed(MINIMAL_V2, member)
    digest = _signature(etree.fromstring(signed)).findtext(f".//{{{DS}}}DigestValue")
    forged = signed.replace(digest.encode(), b"AAAA" + digest[4:].encode())
    assert _reason(forged, trust) == "bad-signature"


def test_unknown_signer(members: dict[str, Member]) -> None:
    signed = _signed(MINIMAL_V2, members["rsa"])
    only_ec = TrustStore.from_paths([members["ec"].cert_path])
    with pytest.raises(UnknownSigner) as excinfo:
        verify_document(signed, only_ec)
    message = str(excinfo.value)
    assert excinfo.value.reason == "unknown-signer"
    assert "CN=csirt-rsa.example" in message
    assert members["rsa"].identity.fingerprint in message
    assert "trust.anchors" in message
    with pytest.raises(UnknownSigner):
        verify_document(signed, TrustStore.from_certificates([]))


def test_not_signed(trust: TrustStore) -> None:
    assert _reason(MINIMAL_V2.read_bytes(), trust) == "signature-missing"


def test_two_signatures_are_refused(member: Member, trust: TrustStore) -> None:
    signed = _signed(MINIMAL_V2, member)

    def duplicate(root: etree._Element) -> None:
        root.find(f"{{{NS_V2}}}Incident").append(copy.deepcopy(root[-1]))

    assert _reason(_mutate(signed, duplicate), trust) == "signature-wrapping"


def test_signed_document_wrapped_in_a_forged_one_is_refused(member: Member, trust: TrustStore) -> None:
    # Classic wrapping: a forged document carrying the genuine signed one (and its signature) inside.
    forged = _load(MINIMAL_V2)
    forged.find(f"{{{NS_V2}}}Incident/{{{NS_V2}}}IncidentID").text = "FORGED"
    holder = etree.SubElement(forged, f"{{{NS_V2}}}AdditionalData", dtype="xml")
    holder.append(etree.fromstring(_signed(MINIMAL_V2, member)))
    assert _reason(etree.tostring(forged), trust) == "signature-wrapping"


@pytest.mark.parametrize(
    "change, reason",
    [
        # Signature directly under Incident: not inside an AdditionalData.
        (lambda r: r.find(f"{{{NS_V2}}}Incident").append(_signature(r)), "signature-misplaced"),
        (lambda r: _signature(r).find(f".//{{{DS}}}Reference").set("URI", "#incident"), "bad-reference"),
        (
            lambda r: (
                _signature(r)
                .find(f"{{{DS}}}SignedInfo")
                .append(copy.deepcopy(_signature(r).find(f".//{{{DS}}}Reference")))
            ),
            "bad-reference",
        ),
        (
            lambda r: (
                _signature(r)
                .find(f".//{{{DS}}}SignatureMethod")
                .set("Algorithm", "http://www.w3.org/2000/09/xmldsig#rsa-sha1")
            ),
            "weak-algorithm",
        ),
        (
            lambda r: (
                _signature(r)
                .find(f".//{{{DS}}}DigestMethod")
                .set("Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1")
            ),
            "weak-algorithm",
        ),
        (
            lambda r: (
                _signature(r)
                .find(f".//{{{DS}}}SignatureMethod")
                .set("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256")
            ),
            "unsupported-algorithm",
        ),
        (
            lambda r: etree.SubElement(
                _signature(r).find(f".//{{{DS}}}Transforms"),
                f"{{{DS}}}Transform",
                Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116",
            ),
            "unsupported-algorithm",
        ),
        (lambda r: _signature(r).remove(_signature(r).find(f"{{{DS}}}KeyInfo")), "certificate-missing"),
        (
            lambda r: setattr(_signature(r).find(f".//{{{DS}}}X509Certificate"), "text", "!!"),
            "bad-certificate",
        ),
        (lambda r: _signature(r).remove(_signature(r).find(f"{{{DS}}}SignedInfo")), "malformed-signature"),
    ],
    ids=[
        "misplaced",
        "uri-fragment",
        "two-references",
        "rsa-sha1",
        "digest-sha1",
        "hmac",
        "xpath-transform",
        "no-keyinfo",
        "broken-certificate",
        "no-signedinfo",
    ],
)
def test_signature_shape_is_enforced(
    change: Callable[[etree._Element], object], reason: str, members: dict[str, Member], trust: TrustStore
) -> None:
    assert _reason(_mutate(_signed(MINIMAL_V2, members["rsa"]), change), trust) == reason


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_expired_and_future_certificates(kind: str) -> None:
    expired = identity_valid_between(kind, NOW - datetime.timedelta(days=60), days=30)
    store = TrustStore.from_certificates([expired.certificate])
    signed = sign_document(_load(MINIMAL_V2), expired)
    with pytest.raises(SignatureRejected, match="expired on") as excinfo:
        verify_document(signed, store)
    assert excinfo.value.reason == "certificate-expired"
    # Judged at a moment inside the validity period, the same bytes verify.
    assert verify_document(signed, store, now=NOW - datetime.timedelta(days=45))

    future = identity_valid_between(kind, NOW + datetime.timedelta(days=1), days=30)
    signed = sign_document(_load(MINIMAL_V2), future)
    store = TrustStore.from_certificates([future.certificate])
    assert _reason(signed, store) == "certificate-not-yet-valid"


def test_unsafe_or_wrong_input(member: Member, trust: TrustStore) -> None:
    signed = _signed(MINIMAL_V2, member)
    with pytest.raises(TooLarge):
        verify_document(signed, trust, max_bytes=len(signed) - 1)
    with pytest.raises(UnsafeXML):
        verify_document(b'<!DOCTYPE x [<!ENTITY e "boom">]>' + signed, trust)
    with pytest.raises(NotIodef):
        verify_document(b"<Incident xmlns='urn:ietf:params:xml:ns:iodef-2.0'/>", trust)
    with pytest.raises(TypeError, match="verify_wire"):
        verify_document(signed.decode(), trust)  # type: ignore[arg-type]
