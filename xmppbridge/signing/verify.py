"""Verify a signed IODEF document: its shape (``shape.py``), its signers (``trust.py``), then the crypto.

A document carries one originator signature and, when members relayed it, one relay signature per hop
(``paths/relay.py``). Each signature is verified over the document as its signer saw it: the originator's over
the document without any relay signature, relay *i*'s over the document without the relays after it.
Callers must use only ``Verified.signed_root``, the content the originator signed as signxml returns it,
re-parsed from its canonical form. The cryptographic check of the shape our signer writes is
``enveloped.py`` (signxml's steps without its copies of the document, tested equivalent); signxml's
``XMLVerifier`` checks every other shape the structural checks let through.

Rejections raise ``SignatureRejected`` (or ``UnknownSigner``) with one of these reasons:
``signature-missing``, ``signature-wrapping``, ``signature-misplaced``, ``bad-reference``,
``weak-algorithm``, ``unsupported-algorithm``, ``malformed-signature``, ``certificate-missing``,
``bad-certificate``, ``unknown-signer``, ``untrusted-chain``, ``certificate-expired``,
``certificate-not-yet-valid``, ``certificate-revoked``, ``revocation-unknown``, ``signer-retired``,
``wrong-key-usage``, ``weak-key``, ``bad-digest``, ``bad-signature``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import functools
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from lxml import etree
from signxml import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, XMLVerifier
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.verifier import SignatureConfiguration

from xmppbridge.errors import NotIodef, SignatureRejected
from xmppbridge.iodef.model import VERSION_BY_NS
from xmppbridge.iodef.parse import DEFAULT_MAX_BYTES, parse_untrusted
from xmppbridge.signing import enveloped
from xmppbridge.signing.dsig import ALLOWED_DIGESTS, ALLOWED_SIGNATURE_METHODS, DS_NS, DS_SIGNATURE, child
from xmppbridge.signing.keys import as_utc
from xmppbridge.signing.shape import Layout, location, signature_layout
from xmppbridge.signing.trust import Signer, TrustStore
from xmppbridge.signing.wireform import wire_bytes

__all__ = ["TrustStore", "Verified", "embedded_certificates", "verify_document", "verify_wire"]

_X509_CERTIFICATES = f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate"
_SIGNATURE_METHODS = frozenset(SignatureMethod(m) for m in ALLOWED_SIGNATURE_METHODS)
_DIGESTS = frozenset(DigestAlgorithm(d) for d in ALLOWED_DIGESTS)


@dataclass(frozen=True)
class Verified:
    """A verified document: what the originator signed, who signed it and who relayed it."""

    signed_root: etree._Element  # the originator's signed content; use nothing else from the input
    originator: Signer
    relays: tuple[Signer, ...] = ()  # oldest first

    @property
    def chain(self) -> tuple[Signer, ...]:
        """Custody: the originator, then every relay in the order they forwarded it."""
        return (self.originator, *self.relays)

    @property
    def presenter(self) -> Signer:
        """The last signer: who handed the document to the service it came from."""
        return self.chain[-1]

    @property
    def signer_subject(self) -> str:
        return self.originator.subject

    @property
    def signer_fingerprint(self) -> str:
        return self.originator.fingerprint

    @property
    def certificate(self) -> x509.Certificate:
        return self.originator.certificate


def verify_wire(
    element: Any,
    trust: TrustStore,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now: datetime.datetime | None = None,
) -> Verified:
    """Verify an IODEF-Document element taken from an XMPP item (lxml or xml.etree).

    Prefixes and indentation do not survive XMPP, so verify the wire form rebuilt from the tree, which is
    what ``sign_document`` signed. A document signed elsewhere with ``ds:`` prefixes fails here (its
    SignedInfo names the prefix); it verifies with ``verify_document`` from the original bytes.
    """
    return verify_document(wire_bytes(element), trust, max_bytes=max_bytes, now=now)


def verify_document(
    data: bytes | etree._Element,
    trust: TrustStore,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now: datetime.datetime | None = None,
) -> Verified:
    """Verify ``data`` as it is (bytes from a file or HTTP body, or an lxml element serialised with its
    prefixes), so documents signed elsewhere with ``ds:`` prefixes verify too.

    ``now`` is the time at which the certificates must be valid (default: the current time; a naive
    datetime is read as UTC).
    """
    if isinstance(data, etree._Element):
        # Without the tail: an element taken out of a stanza may be followed by text of its parent.
        data = etree.tostring(data, with_tail=False)
    elif not isinstance(data, bytes):
        raise TypeError(f"verify_document takes bytes or an lxml element (use verify_wire for {type(data)})")
    root = parse_untrusted(data, max_bytes=max_bytes)
    qname = etree.QName(root)
    if qname.localname != "IODEF-Document" or qname.namespace not in VERSION_BY_NS:
        raise NotIodef(f"the root element is {root.tag}, not an IODEF 1.0 or 2.0 IODEF-Document")
    layout = signature_layout(root, qname.namespace)
    when = as_utc(now)

    original = _as_signed_by(root, layout, 0)
    originator, signed_root = _verify_one(original, root, layout.originator, trust, when)
    if signed_root is None or signed_root.tag != root.tag:
        raise SignatureRejected("the signature does not cover the IODEF-Document", reason="bad-reference")
    relays = tuple(
        _verify_one(_as_signed_by(root, layout, i + 1), root, relay, trust, when)[0]
        for i, relay in enumerate(layout.relays)
    )
    return Verified(signed_root=signed_root, originator=originator, relays=relays)


def _as_signed_by(root: etree._Element, layout: Layout, relays_kept: int) -> etree._Element:
    """The document as the signer saw it who added signature number ``relays_kept`` (0: the originator):
    a copy without the relay holders after it. Relay holders trail their parent, so removing later ones
    leaves the positions in every signxml location unchanged."""
    later = layout.relays[relays_kept:]
    if not later:
        return root
    doc = copy.deepcopy(root)
    for relay in reversed(later):  # last first: positions are counted among the remaining siblings
        holder = doc.find(location(root, relay).rstrip("/"))
        parent = None if holder is None else holder.getparent()
        assert holder is not None and parent is not None  # doc is a copy of root: same shape
        parent.remove(holder)
    return doc


def _verify_one(doc: etree._Element, root: etree._Element, signature: etree._Element, trust: TrustStore,
                when: datetime.datetime) -> tuple[Signer, etree._Element | None]:
    """Resolve the signer of ``signature`` (an element of ``root``) and verify it over ``doc``."""
    signer = trust.resolve(embedded_certificates(signature), when)
    # Pin the signature checked to exactly this one, so that neither check can pick another.
    where = location(root, signature)
    try:
        signed_xml = _check(doc, root, signature, where, signer.certificate, when)
    except InvalidDigest as exc:
        raise SignatureRejected(
            f"the document was changed after {signer.subject} signed it: {exc}", reason="bad-digest"
        ) from exc
    except InvalidCertificate as exc:
        raise SignatureRejected(f"certificate of {signer.subject} refused: {exc}",
                                reason="bad-certificate") from exc
    except InvalidSignature as exc:
        raise SignatureRejected(
            f"signature value does not verify with the certificate of {signer.subject}: {exc}",
            reason="bad-signature",
        ) from exc
    except (InvalidInput, etree.DocumentInvalid) as exc:
        raise SignatureRejected(f"malformed signature: {exc}", reason="malformed-signature") from exc
    except Exception as exc:  # noqa: BLE001
        # signxml is not written for hostile input in every corner (broken base64, odd key info, ...);
        # whatever it trips over, the signature did not verify, and the caller must get a reason.
        raise SignatureRejected(f"signature check failed: {type(exc).__name__}: {exc}",
                                reason="bad-signature") from exc
    return signer, signed_xml


def _check(doc: etree._Element, root: etree._Element, signature: etree._Element, where: str,
           certificate: x509.Certificate, when: datetime.datetime) -> etree._Element | None:
    """The signed content, checking the signature in ``doc`` at signxml location ``where`` (that of
    ``signature`` in ``root``; ``doc`` is ``root`` or a copy); signxml's exceptions when it does not
    verify. Our own check (``enveloped.py``) for the shape it knows, signxml's for any other."""
    # What signxml picks for this location: the first ds:Signature child of the element it names.
    if doc is root:
        parent = signature.getparent()
        pinned = child(parent, DS_SIGNATURE) if parent is not None else None
    else:
        pinned = doc.find(f"{where}{DS_SIGNATURE}")
    if pinned is not None and enveloped.handles(doc, pinned):
        return enveloped.verify(doc, pinned, certificate, when)
    config = SignatureConfiguration(
        location=where,
        expect_references=1,
        signature_methods=_SIGNATURE_METHODS,
        digest_algorithms=_DIGESTS,
        verification_time=when,
    )
    result = XMLVerifier().verify(doc, x509_cert=certificate, expect_config=config)
    return result.signed_xml  # type: ignore[union-attr]  # expect_references=1 -> one result


def embedded_certificates(signature: etree._Element) -> list[x509.Certificate]:
    """The certificates a signature embeds, leaf first, parsed but not trusted."""
    texts = [e.text or "" for e in signature.findall(_X509_CERTIFICATES)]
    if not texts:
        raise SignatureRejected(
            "the signature carries no certificate (KeyInfo/X509Data/X509Certificate); "
            "the sender must embed their signing certificate",
            reason="certificate-missing",
        )
    return [_load_certificate("".join(text.split())) for text in texts]


@functools.lru_cache(maxsize=256)
def _load_certificate(text: str) -> x509.Certificate:
    """The certificate in ``text`` (base64 DER without whitespace). Members sign with the same few
    certificates, so parsed ones are kept (immutable objects; failures are not cached)."""
    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode(text))
        # Parsed lazily by cryptography: touch what the trust checks read, so that a malformed
        # certificate is refused here rather than failing somewhere inside them.
        certificate.extensions  # noqa: B018
        certificate.subject.rfc4514_string()
        certificate.issuer.rfc4514_string()  # a flipped bit here once escaped as a ValueError (hypothesis)
        certificate.not_valid_before_utc, certificate.not_valid_after_utc  # noqa: B018
        certificate.public_key()
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise SignatureRejected(f"unreadable X509Certificate: {exc}", reason="bad-certificate") from None
    return certificate
