"""The verifier checks the shape our signer writes itself (``enveloped.py``) instead of through signxml's
``XMLVerifier``; for every document, accepted or refused, the outcome must be what signxml's check gives:
the same reason, the same signers, the same signed content."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml import XMLSigner

from tests.hostile_corpus import MAX_BYTES, build_corpus, build_world, iodef2
from xmppbridge.errors import InputRejected
from xmppbridge.signing import enveloped
from xmppbridge.signing.dsig import C14N_METHODS, DS_NS, SHA256
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.verify import verify_document

WORLD = build_world()
CORPUS = [case for case in build_corpus(WORLD) if case.payload is not None]
SIGNED = sign_document(etree.fromstring(iodef2("EQ-1")), WORLD.a)
RELAYED = relay_sign(relay_sign(SIGNED, WORLD.signers["ca-member"]), WORLD.a)
NOW = datetime.datetime.now(datetime.UTC)


def _signed_elsewhere(c14n: str, holder_content: str) -> bytes:
    """Signed by signxml itself (as another implementation would), with the given canonicalisation and
    the placeholder among other content of its holder: text before and after it, a sibling before it."""
    root = etree.fromstring(iodef2("EQ-2"))
    holder = etree.SubElement(root, f"{{{root.nsmap[None]}}}AdditionalData", dtype="xml", meaning="signature")
    holder.text = "before" if "text" in holder_content else None
    if "sibling" in holder_content:
        etree.SubElement(holder, "{urn:x}Note").tail = " between "
    if "comment" in holder_content:
        holder.append(etree.Comment("c"))
    placeholder = etree.SubElement(holder, f"{{{DS_NS}}}Signature", Id="placeholder", nsmap={"ds": DS_NS})
    placeholder.tail = " after" if "tail" in holder_content else None
    signer = XMLSigner(signature_algorithm="ecdsa-sha256", digest_algorithm=SHA256, c14n_algorithm=c14n)
    identity = WORLD.a
    return etree.tostring(signer.sign(root, key=identity.private_key, cert=[identity.certificate]))


def _signed_info_canonicalised_with(c14n: str) -> bytes:
    """Our signature, its SignedInfo canonicalised (and signed again) with another algorithm: the
    reference keeps our transforms, so only CanonicalizationMethod tells it apart."""
    root = etree.fromstring(SIGNED)
    signature = root.find(f".//{{{DS_NS}}}Signature")
    signature.find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}CanonicalizationMethod").set("Algorithm", c14n)
    signature.find(f"{{{DS_NS}}}SignedInfo").append(etree.Comment("signed only WithComments"))
    copy = etree.fromstring(etree.tostring(signature))  # as signxml canonicalises it
    data = etree.tostring(copy.find(f"{{{DS_NS}}}SignedInfo"), method="c14n",
                          exclusive="exc-c14n" in c14n, with_comments=c14n.endswith("#WithComments"))
    key = WORLD.a.private_key
    r, s_ = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))  # type: ignore[call-arg]
    size = (key.key_size + 7) // 8
    value = base64.b64encode(r.to_bytes(size, "big") + s_.to_bytes(size, "big")).decode()
    signature.find(f"{{{DS_NS}}}SignatureValue").text = value
    return etree.tostring(root)


CANONICALISED = [_signed_info_canonicalised_with(c14n) for c14n in sorted(C14N_METHODS)]
ELSEWHERE = [
    _signed_elsewhere(c14n, content)
    for c14n in sorted(C14N_METHODS)
    for content in ("", "text", "sibling", "comment", "text sibling comment", "sibling tail")
]


def _outcome(data: bytes) -> Any:
    try:
        verified = verify_document(data, WORLD.trust, max_bytes=MAX_BYTES, now=NOW)
    except InputRejected as exc:
        return exc.reason, type(exc).__name__
    return (etree.tostring(verified.signed_root, method="c14n"),
            tuple(signer.fingerprint for signer in verified.chain))


def assert_same_outcome(data: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    ours = _outcome(data)
    with monkeypatch.context() as patch:
        patch.setattr(enveloped, "handles", lambda doc, signature: False)  # signxml checks everything
        theirs = _outcome(data)
    assert ours == theirs
    return ours


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_hostile_corpus_as_with_signxml(case: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same_outcome(case.payload, monkeypatch)
    if case.over_xmpp:
        assert_same_outcome(case.wire, monkeypatch)


@pytest.mark.parametrize("data", ELSEWHERE)
def test_signed_elsewhere_as_with_signxml(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = assert_same_outcome(data, monkeypatch)
    # Valid signatures, accepted; but signxml (and so we) refuse a signature followed by text.
    assert isinstance(outcome[1], tuple) != (b" after" in data)


@pytest.mark.parametrize("data", CANONICALISED)
def test_other_canonicalisation_of_signed_info_as_with_signxml(data: bytes,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # signxml accepts the exclusive ones and trips over the inclusive ones (default-namespace
    # SignedInfo); either way the outcome must be the same.
    assert_same_outcome(data, monkeypatch)


def test_fast_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    original = enveloped.verify

    def spy(*args: Any) -> Any:
        taken.append(True)
        return original(*args)

    monkeypatch.setattr(enveloped, "verify", spy)
    accepted = assert_same_outcome(RELAYED, monkeypatch)
    assert len(accepted[1]) == 3 and len(taken) == 3  # originator and both relays


def _mutate(data: bytes, change: Callable[[etree._Element], object]) -> bytes:
    root = etree.fromstring(data)
    change(root)
    return etree.tostring(root)


def _signatures(root: etree._Element) -> list[etree._Element]:
    return list(root.iter(f"{{{DS_NS}}}Signature"))


# Changes an attacker (or a careless relay) could make around a valid signature.
def _changes(draw: st.DrawFn) -> Callable[[etree._Element], None]:
    what = draw(st.sampled_from([
        "tail", "holder-text", "comment-before", "comment-in-signed-info", "pi-after", "text-change",
        "attribute-change", "transform-added", "transform-removed", "transforms-swapped",
        "c14n-inclusive", "c14n-prefix-list", "key-value", "signature-value", "digest-value",
        "second-reference", "reference-uri", "keyinfo-comment", "x509-issuer-serial", "nothing",
    ]))
    index = draw(st.integers(0, 2))
    text = draw(st.sampled_from([" ", "\n", "\t", "\r", " \r\n", "x", "\xa0"]))
    ds = f"{{{DS_NS}}}"

    def change(root: etree._Element) -> None:
        signatures = _signatures(root)
        signature = signatures[index % len(signatures)]
        signed_info = signature.find(ds + "SignedInfo")
        reference = signed_info.find(ds + "Reference")
        if what == "tail":
            signature.tail = text
        elif what == "holder-text":
            signature.getparent().text = text
        elif what == "comment-before":
            signature.addprevious(etree.Comment("c"))
        elif what == "comment-in-signed-info":
            signed_info.insert(0, etree.Comment("c"))
        elif what == "pi-after":
            signature.addnext(etree.ProcessingInstruction("p"))
        elif what == "text-change":
            root.find(".//{*}Description").text += text
        elif what == "attribute-change":
            root.set("version", "2.01")
        elif what == "transform-added":
            etree.SubElement(reference.find(ds + "Transforms"), ds + "Transform",
                             Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#WithComments")
        elif what == "transform-removed":
            transforms = reference.find(ds + "Transforms")
            transforms.remove(transforms[-1])
        elif what == "transforms-swapped":
            transforms = reference.find(ds + "Transforms")
            transforms.insert(0, transforms[-1])
        elif what == "c14n-inclusive":
            signed_info.find(ds + "CanonicalizationMethod").set("Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")
        elif what == "c14n-prefix-list":
            etree.SubElement(signed_info.find(ds + "CanonicalizationMethod"), "{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces",
                             PrefixList="ds")
        elif what == "key-value":
            etree.SubElement(etree.SubElement(signature.find(ds + "KeyInfo"), ds + "KeyValue"),
                             ds + "RSAKeyValue")
        elif what == "signature-value":
            value = signature.find(ds + "SignatureValue")
            value.text = value.text[:-4] + "AAA="
        elif what == "digest-value":
            value = reference.find(ds + "DigestValue")
            value.text = "A" + value.text[1:]
        elif what == "second-reference":
            signed_info.append(etree.fromstring(etree.tostring(reference)))
        elif what == "reference-uri":
            reference.set("URI", "#x")
        elif what == "keyinfo-comment":
            signature.find(ds + "KeyInfo").append(etree.Comment("c"))
        elif what == "x509-issuer-serial":
            etree.SubElement(signature.find(f"{ds}KeyInfo/{ds}X509Data"), ds + "X509IssuerSerial")

    return change


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from([SIGNED, RELAYED, *ELSEWHERE, *CANONICALISED]))
    for _ in range(draw(st.integers(1, 2))):
        data = _mutate(data, _changes(draw))
    return data


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_signatures_as_with_signxml(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same_outcome(data, monkeypatch)
