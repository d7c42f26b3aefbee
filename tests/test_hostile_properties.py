"""Property tests: whatever bytes or trees arrive, the parser, the verifier and the receive checks either
accept or raise an ``InputRejected`` with a reason; nothing else escapes (no crash, no stray exception)."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.hostile_corpus import MAX_BYTES, NODE, SERVICE, build_world, iodef2
from xmppbridge.errors import InputRejected
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.paths.receive import check_item
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.verify import verify_document
from xmppbridge.signing.wireform import wire_bytes

WORLD = build_world()
SIGNED = sign_document(etree.fromstring(iodef2("P-1")), WORLD.a)
RELAYED = relay_sign(SIGNED, WORLD.signers["ca-member"])
# Fragments an attacker would try, spliced in anywhere.
FRAGMENTS = [
    b"<", b">", b"&", b"&amp;", b"&#0;", b"&#x110000;", b"&x;", b"<!DOCTYPE x>", b'<!ENTITY e "e">',
    b"<![CDATA[", b"]]>", b"<!--", b"-->", b"<?pi x?>", b'xmlns="urn:x"', b'xmlns:ds="urn:x"', b"\x00",
    b"\xff", b"\xc3", b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"/>', b'<Reference URI="#x"/>',
    b"<IODEF-Document/>", b'<AdditionalData meaning="relay-signature">', b"</AdditionalData>",
    b'<Object xmlns="http://www.w3.org/2000/09/xmldsig#">', b"</Incident>", b"<Incident>", b" ", b"\n",
    b'Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"', b"AAAA", b"====", b"xml:lang", b'"', b"'",
]
SETTINGS = settings(max_examples=250, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def receive_checks(data: bytes) -> None:
    """Everything the receive path does before storing; must accept or reject with a reason."""
    for payload in (data, _wire(data)):
        if payload is None:
            continue
        try:
            check_item(WORLD.trust, service=SERVICE, node=NODE, payload=payload, max_bytes=MAX_BYTES)
        except InputRejected as exc:
            assert exc.reason and str(exc)


def _wire(data: bytes) -> bytes | None:
    """What the mirror would hand over, if an XMPP server could carry these bytes at all."""
    try:
        return wire_bytes(ET.fromstring(data))
    except (ET.ParseError, ValueError):
        return None


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes(data: bytes) -> None:
    try:
        parse_untrusted(data)
    except InputRejected as exc:
        assert exc.reason


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([SIGNED, RELAYED])))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "flip", "random"]))
        if action == "insert":
            data[at:at] = draw(st.sampled_from(FRAGMENTS))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif action == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
    return bytes(data)


@SETTINGS
@given(spliced())
def test_spliced_signed_documents(data: bytes) -> None:
    receive_checks(data)


@st.composite
def restructured(draw: st.DrawFn) -> bytes:
    root = etree.fromstring(draw(st.sampled_from([SIGNED, RELAYED])))
    for _ in range(draw(st.integers(1, 3))):
        elements = list(root.iter())
        target = elements[draw(st.integers(0, len(elements) - 1))]
        other = elements[draw(st.integers(0, len(elements) - 1))]
        action = draw(st.sampled_from(["remove", "duplicate", "move", "text", "attribute", "rename"]))
        parent = target.getparent()
        if action == "remove" and parent is not None:
            parent.remove(target)
        elif action == "duplicate" and parent is not None:
            parent.insert(parent.index(target), copy.deepcopy(target))
        elif action == "move" and parent is not None and other is not target:
            if target not in other.iterancestors():  # an element cannot move into itself
                other.append(target)
        elif action == "text":
            target.text = draw(st.text(max_size=30).filter(_xml_text))
        elif action == "attribute":
            target.set(draw(st.sampled_from(["URI", "Algorithm", "meaning", "restriction", "Id", "dtype"])),
                       draw(st.text(max_size=30).filter(_xml_text)))
        elif action == "rename":
            target.tag = draw(st.sampled_from(["{urn:x}Signature", "{http://www.w3.org/2000/09/xmldsig#}Object",
                                               "{urn:ietf:params:xml:ns:iodef-2.0}IODEF-Document",
                                               "{http://www.w3.org/2000/09/xmldsig#}Signature"]))
    return etree.tostring(root)


def _xml_text(text: str) -> bool:
    # lxml refuses to store text XML cannot represent; such trees never come off a parser anyway.
    try:
        etree.Element("x").text = text
    except ValueError:
        return False
    return True


@SETTINGS
@given(restructured())
def test_restructured_signed_documents(data: bytes) -> None:
    receive_checks(data)


@SETTINGS
@given(st.binary(max_size=400))
def test_verify_never_crashes_on_noise_in_the_signature(noise: bytes) -> None:
    text = noise.decode("latin-1").translate({i: None for i in range(32)} | {ord(c): None for c in "<&>\"'"})
    for name in ("SignatureValue", "DigestValue", "X509Certificate"):
        data = SIGNED.replace(f"<{name}>".encode(), f"<{name}>{text}".encode(), 1)
        try:
            verify_document(data, WORLD.trust)
        except InputRejected as exc:
            assert exc.reason
