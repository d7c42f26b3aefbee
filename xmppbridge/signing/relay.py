"""Relay signatures: a member that re-publishes an item keeps the originator's signature and adds its own.

The relay signature goes into a new ``AdditionalData dtype="xml" meaning="relay-signature"`` appended
after the last signature holder (root level in IODEF 2.0, the originator's Incident in 1.0), so the
document still validates against its XSD and, being wire form without prefixes, survives XMPP like the
original. Its reference is ``URI=""`` with the enveloped transform: it covers the whole document as the
relay received it, the originator's signature and any earlier relay signatures included. The verifier
(``verify.py``) checks each signature over the document as its signer saw it and reports the chain.
"""

from __future__ import annotations

from lxml import etree

from xmppbridge.errors import NotIodef
from xmppbridge.iodef.model import VERSION_BY_NS
from xmppbridge.iodef.parse import DEFAULT_MAX_BYTES, parse_untrusted
from xmppbridge.signing.keys import SigningIdentity
from xmppbridge.signing.shape import RELAY_MEANING, signature_layout
from xmppbridge.signing.sign import add_holder, parse_wire, sign_holder
from xmppbridge.signing.wireform import wire_bytes


def relay_sign(payload: bytes, identity: SigningIdentity, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """``payload`` (a verified, signed document in wire form, e.g. a mirrored item) with a relay signature
    by ``identity`` added; the result in wire form.

    Only the shape is checked here (one originator signature, earlier relays trailing); relay only what
    ``verify_document`` accepted, so that the relay vouches for a document it could verify.
    """
    root = parse_untrusted(payload, max_bytes=max_bytes)
    qname = etree.QName(root)
    if qname.localname != "IODEF-Document" or qname.namespace not in VERSION_BY_NS:
        raise NotIodef(f"can only relay an IODEF-Document, not {root.tag}")
    wire = wire_bytes(root)  # written once: the relay signature is spliced into it
    doc = parse_wire(wire)
    layout = signature_layout(doc, qname.namespace)
    last = (layout.relays[-1] if layout.relays else layout.originator).getparent()
    assert last is not None and last.getparent() is not None  # signature_layout checked the shape
    holder = add_holder(last.getparent(), qname.namespace, RELAY_MEANING)
    return sign_holder(doc, holder, identity, wire)
