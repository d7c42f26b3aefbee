"""Sign an IODEF document: one enveloped XML signature over the wire form of the whole document.

The signature sits in ``AdditionalData dtype="xml" meaning="signature"`` because neither IODEF schema
allows ``ds:Signature`` directly under IODEF-Document (DIGEST §2): the last root child in IODEF 2.0, the
last child of the last Incident in 1.0 (whose root allows no AdditionalData). The reference is
``URI=""`` with the enveloped transform, so it covers the whole document wherever the signature sits.
"""

from __future__ import annotations

from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import SignatureConstructionMethod

from xmppbridge.errors import InputRejected, NotIodef, SchemaInvalid
from xmppbridge.iodef.model import VERSION_BY_NS
from xmppbridge.signing.dsig import DS_NS, DS_SIGNATURE, EXC_C14N, SHA256
from xmppbridge.signing.keys import SigningIdentity
from xmppbridge.signing.wireform import wire_bytes

# Only ever fed our own wire form (no DOCTYPE, no entities by construction); still, never resolve anything.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def sign_document(root: etree._Element, identity: SigningIdentity) -> bytes:
    """The wire form of ``root`` (an IODEF-Document) carrying a fresh signature by ``identity``.

    Any earlier document signature is removed first; the input element is not modified.
    """
    # Sign exactly what a receiver rebuilds from the namespace-aware tree (wireform.py): prefixes and
    # indentation do not survive XMPP, so they must not be part of what we sign.
    doc = wire_tree(root)
    ns = _iodef_namespace(doc)
    _remove_document_signatures(doc, ns)
    _insert_placeholder(doc, ns)

    return sign_at_placeholder(doc, identity)


def wire_tree(root: etree._Element) -> etree._Element:
    """A fresh tree of ``root``'s wire form: what gets signed, so what a receiver can rebuild."""
    return etree.fromstring(wire_bytes(root), _PARSER)


def sign_at_placeholder(doc: etree._Element, identity: SigningIdentity) -> bytes:
    """Sign ``doc`` (modified in place) with an enveloped, whole-document signature that replaces its
    ``<Signature Id="placeholder"/>``; the result in wire form."""
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=identity.signature_method,
        digest_algorithm=SHA256,
        c14n_algorithm=EXC_C14N,
    )
    # Default-namespace ds elements: a ds: prefix would be rewritten by Prosody and, being rendered by
    # exclusive C14N inside SignedInfo, break the signature in transit.
    signer.namespaces = {None: DS_NS}
    signed = signer.sign(doc, key=identity.private_key, cert=[identity.certificate, *identity.intermediates])

    # With {None: ds} signxml builds the Signature's children as un-namespaced elements that only land in
    # the ds namespace once serialised; wire_bytes reads the in-memory tags, so round-trip first.
    signed = etree.fromstring(etree.tostring(signed), _PARSER)
    return wire_bytes(signed)


def add_placeholder(parent: etree._Element, ns: str, meaning: str) -> None:
    """Append ``AdditionalData dtype="xml" meaning=...`` holding the placeholder signxml replaces."""
    holder = etree.SubElement(parent, f"{{{ns}}}AdditionalData", dtype="xml", meaning=meaning)
    etree.SubElement(holder, DS_SIGNATURE, Id="placeholder", nsmap={None: DS_NS})


def _iodef_namespace(doc: etree._Element) -> str:
    qname = etree.QName(doc)
    if qname.localname != "IODEF-Document" or qname.namespace not in VERSION_BY_NS:
        raise NotIodef(f"can only sign an IODEF-Document (1.0 or 2.0), not {doc.tag}")
    # signxml would turn an Id attribute on the root into URI="#id"; receivers require URI="".
    for attribute in ("Id", "ID"):
        if attribute in doc.attrib:
            raise SchemaInvalid(f"IODEF-Document has an {attribute} attribute, which IODEF does not define")
    return qname.namespace


def _remove_document_signatures(doc: etree._Element, ns: str) -> None:
    # Re-signing replaces the old signature (never moves signed nodes, DIGEST §5). An AdditionalData that
    # directly holds a ds:Signature is an earlier document signature too, even without meaning="signature"
    # (other implementations label it differently); left in place it would make two signatures.
    for parent in (doc, *doc.findall(f"{{{ns}}}Incident")):
        for extra in parent.findall(f"{{{ns}}}AdditionalData"):
            if extra.get("meaning") == "signature" or extra.find(DS_SIGNATURE) is not None:
                parent.remove(extra)
    leftover = doc.find(f".//{DS_SIGNATURE}")
    if leftover is not None:
        path = doc.getroottree().getpath(leftover)
        raise InputRejected(
            f"the document already contains an XML signature at {path}; receivers accept exactly one "
            "signature per document, so remove it before signing",
            reason="signature-wrapping",
        )


def _insert_placeholder(doc: etree._Element, ns: str) -> None:
    if VERSION_BY_NS[ns] == "2.0":
        parent = doc
    else:
        incidents = doc.findall(f"{{{ns}}}Incident")
        if not incidents:
            raise SchemaInvalid("IODEF 1.0 document has no Incident to carry the signature")
        # AdditionalData is last in the Incident sequence, so appending keeps the document schema-valid.
        parent = incidents[-1]
    add_placeholder(parent, ns, "signature")
