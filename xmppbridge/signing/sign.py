"""Sign an IODEF document: one enveloped XML signature over the wire form of the whole document.

The signature sits in ``AdditionalData dtype="xml" meaning="signature"`` because neither IODEF schema
allows ``ds:Signature`` directly under IODEF-Document (schemas/): the last root child in IODEF 2.0, the
last child of the last Incident in 1.0 (whose root allows no AdditionalData). The reference is
``URI=""`` with the enveloped transform, so it covers the whole document wherever the signature sits.

The signature is built here rather than by signxml's ``XMLSigner`` (whose output it reproduces byte for
byte, tests/test_signing_equivalence.py): the signer copies the whole document twice (serialise and
re-parse) and we then had to serialise and re-parse its result once more and write the wire form a
second time. Here the wire form is written once; the document is parsed from it once, to get its
exclusive C14N (libxml2) for the digest; the ``Signature``, whose content is fixed but for the digest,
the signature value and the certificates, is written as wire form directly and spliced in where it
goes. What gets signed is the exclusive C14N of ``SignedInfo``, computed by libxml2 from that wire form,
exactly as a verifier computes it.
"""

from __future__ import annotations

import base64
import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree

from xmppbridge.errors import InputRejected, NotIodef, SchemaInvalid
from xmppbridge.iodef.model import VERSION_BY_NS
from xmppbridge.signing.dsig import DS_NS, DS_SIGNATURE, ENVELOPED, EXC_C14N, SHA256
from xmppbridge.signing.keys import SigningIdentity
from xmppbridge.signing.wireform import wire_bytes, wire_text

# Only ever fed our own wire form (no DOCTYPE, no entities by construction); still, never resolve anything.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

SIGNATURE_MEANING = "signature"


def sign_document(root: etree._Element, identity: SigningIdentity) -> bytes:
    """The wire form of ``root`` (an IODEF-Document) carrying a fresh signature by ``identity``.

    Any earlier document signature is removed first; the input element is not modified.
    """
    # Sign exactly what a receiver rebuilds from the namespace-aware tree (wireform.py): prefixes and
    # indentation do not survive XMPP, so they must not be part of what we sign.
    wire = wire_bytes(root)
    doc = parse_wire(wire)
    ns = _iodef_namespace(doc)
    if _remove_document_signatures(doc, ns):
        wire = None  # the document changed: the wire form has to be written again
    holder = add_holder(_signature_parent(doc, ns), ns, SIGNATURE_MEANING)
    return sign_holder(doc, holder, identity, wire)


def parse_wire(wire: bytes) -> etree._Element:
    """The tree of a wire form written by ``wire_bytes``."""
    return etree.fromstring(wire, _PARSER)


def sign_holder(doc: etree._Element, holder: etree._Element, identity: SigningIdentity,
                wire: bytes | None) -> bytes:
    """Sign ``doc`` (a tree parsed from a wire form) with a signature placed in ``holder``, an empty
    AdditionalData that is the last child of its parent; the result in wire form.

    ``wire``, if given, is the wire form of ``doc`` as it was before ``holder`` was appended: the result
    is then that text with the holder spliced in, instead of the whole document written again.
    """
    parent = holder.getparent()
    assert parent is not None
    # The wire form drops whitespace-only text of an element once it has element children: text the
    # holder gets by the Signature, and its parent by the holder if that is its first. A receiver never
    # sees that text, so it must not be digested either (the signer before this one digested it, and
    # nobody could verify such documents).
    for element, children in ((parent, 1), (holder, 0)):
        if len(element) == children and element.text is not None and element.text.isspace():
            element.text = None
    # The enveloped transform removes the Signature, leaving the empty holder: this is the reference.
    digest = _hash(etree.tostring(doc, method="c14n", exclusive=True, with_comments=False))
    signed_info = _signed_info(identity.signature_method, digest)
    value = _signature_value(identity, signed_info)
    signature = (
        f'<Signature xmlns="{DS_NS}">{signed_info}<SignatureValue>{value}</SignatureValue>'
        f"<KeyInfo><X509Data>{_certificates(identity)}</X509Data></KeyInfo></Signature>"
    )
    position = None if wire is None else _end_of_parent(doc, holder, wire)
    holder.append(etree.fromstring(signature, _PARSER))
    if wire is None or position is None:
        return wire_bytes(doc)
    holder_wire = wire_text(holder, etree.QName(parent).namespace or "").encode("utf-8")
    return b"".join((wire[:position], holder_wire, wire[position:]))


def _signed_info(signature_method: str, digest: bytes) -> str:
    # The wire form signxml's XMLSigner writes for an enveloped signature with exclusive C14N (the
    # reference names it as a transform too, as signxml and libxmlsec1 do).
    return (
        f'<SignedInfo><CanonicalizationMethod Algorithm="{EXC_C14N}"/>'
        f'<SignatureMethod Algorithm="{signature_method}"/>'
        f'<Reference URI=""><Transforms><Transform Algorithm="{ENVELOPED}"/>'
        f'<Transform Algorithm="{EXC_C14N}"/></Transforms><DigestMethod Algorithm="{SHA256}"/>'
        f"<DigestValue>{base64.b64encode(digest).decode()}</DigestValue></Reference></SignedInfo>"
    )


def _signature_value(identity: SigningIdentity, signed_info: str) -> str:
    # Sign SignedInfo as a verifier canonicalises it: in the ds namespace, which the Signature declares.
    in_ds = signed_info.replace("<SignedInfo>", f'<SignedInfo xmlns="{DS_NS}">', 1)
    element = etree.fromstring(in_ds, _PARSER)
    data = etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
    key = identity.private_key
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        # XML-DSig wants r and s as fixed-size big-endian integers, not cryptography's DER sequence.
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        size = (key.key_size + 7) // 8
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return base64.b64encode(raw).decode()


def _certificates(identity: SigningIdentity) -> str:
    return _x509_certificates((identity.certificate, *identity.intermediates))


@functools.lru_cache(maxsize=64)  # one entry per identity in practice
def _x509_certificates(certificates: tuple[x509.Certificate, ...]) -> str:
    # The PEM body with its line breaks and final newline, as signxml embeds it.
    parts = []
    for certificate in certificates:
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        body = pem.split("-----\n", 1)[1].rsplit("-----END", 1)[0]
        parts.append(f"<X509Certificate>{body}</X509Certificate>")
    return "".join(parts)


def _hash(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _end_of_parent(doc: etree._Element, holder: etree._Element, wire: bytes) -> int | None:
    """Where the holder goes in ``wire``: just before its parent's end tag, or None when that position
    cannot be named for sure (then the caller writes the whole document again).

    Appending the holder leaves the wire form of everything else as it was, provided the parent already
    had element children (otherwise its whitespace-only text would now be dropped): ``doc`` was parsed
    from ``wire``, and the wire form of a tree parsed from a wire form is that wire form again.
    """
    parent = holder.getparent()
    if parent is None or len(parent) < 2:
        return None
    close = f"</{etree.QName(parent).localname}>".encode()
    if parent is doc:
        return len(wire) - len(close) if wire.endswith(close) else None
    # The last Incident: its end tag is followed only by its tail (text: no "<") and the root's end tag.
    if parent.getparent() is not doc or parent.getnext() is not None:
        return None
    root_close = f"</{etree.QName(doc).localname}>".encode()
    position = wire.rfind(close, 0, len(wire) - len(root_close))
    if position < 0 or not wire.endswith(root_close) or b"<" in wire[position + len(close):-len(root_close)]:
        return None
    return position


def add_holder(parent: etree._Element, ns: str, meaning: str) -> etree._Element:
    """Append an empty ``AdditionalData dtype="xml" meaning=...`` for ``sign_holder`` to fill."""
    return etree.SubElement(parent, f"{{{ns}}}AdditionalData", dtype="xml", meaning=meaning)


def _iodef_namespace(doc: etree._Element) -> str:
    qname = etree.QName(doc)
    if qname.localname != "IODEF-Document" or qname.namespace not in VERSION_BY_NS:
        raise NotIodef(f"can only sign an IODEF-Document (1.0 or 2.0), not {doc.tag}")
    # A verifier resolving the reference would look for an Id; receivers require URI="" on the root.
    for attribute in ("Id", "ID"):
        if attribute in doc.attrib:
            raise SchemaInvalid(f"IODEF-Document has an {attribute} attribute, which IODEF does not define")
    return qname.namespace


def _remove_document_signatures(doc: etree._Element, ns: str) -> bool:
    """Remove earlier document signatures; True if there were any."""
    # Re-signing replaces the old signature (never moves signed nodes: W3C XML Signature Best Practices). An
    # AdditionalData that directly holds a ds:Signature is an earlier document signature too, even without
    # meaning="signature" (other implementations label it differently); left in place it would make two
    # signatures.
    removed = False
    for parent in (doc, *doc.findall(f"{{{ns}}}Incident")):
        for extra in parent.findall(f"{{{ns}}}AdditionalData"):
            if extra.get("meaning") == SIGNATURE_MEANING or extra.find(DS_SIGNATURE) is not None:
                parent.remove(extra)
                removed = True
    leftover = doc.find(f".//{DS_SIGNATURE}")
    if leftover is not None:
        path = doc.getroottree().getpath(leftover)
        raise InputRejected(
            f"the document already contains an XML signature at {path}; receivers accept exactly one "
            "signature per document, so remove it before signing",
            reason="signature-wrapping",
        )
    return removed


def _signature_parent(doc: etree._Element, ns: str) -> etree._Element:
    if VERSION_BY_NS[ns] == "2.0":
        return doc
    incidents = doc.findall(f"{{{ns}}}Incident")
    if not incidents:
        raise SchemaInvalid("IODEF 1.0 document has no Incident to carry the signature")
    # AdditionalData is last in the Incident sequence, so appending keeps the document schema-valid.
    return incidents[-1]
