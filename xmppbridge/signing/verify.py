"""Verify a signed IODEF document against the pinned certificates of the sharing members.

Trust is pinning, not PKI: a signature is accepted only when the certificate embedded in it is, byte for
byte (SHA-256 fingerprint), one the operator listed in ``trust.anchors``. Before signxml sees the
document we check the shape that rules out signature wrapping (DIGEST §5): exactly one ds:Signature,
inside an IODEF AdditionalData, with exactly one whole-document reference (``URI=""``) and allowed
algorithms. Callers must use only ``Verified.signed_root``, which is what the signature covers.

Rejections raise ``SignatureRejected`` (or ``UnknownSigner``) with one of these reasons:
``signature-missing``, ``signature-wrapping``, ``signature-misplaced``, ``bad-reference``,
``weak-algorithm``, ``unsupported-algorithm``, ``malformed-signature``, ``certificate-missing``,
``bad-certificate``, ``unknown-signer``, ``certificate-expired``, ``certificate-not-yet-valid``,
``bad-digest``, ``bad-signature``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509
from lxml import etree
from signxml import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, XMLVerifier
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import SignXMLException
from signxml.verifier import SignatureConfiguration

from xmppbridge.errors import ConfigError, NotIodef, SignatureRejected, UnknownSigner
from xmppbridge.iodef.model import VERSION_BY_NS
from xmppbridge.iodef.parse import DEFAULT_MAX_BYTES, parse_untrusted
from xmppbridge.signing.dsig import (
    ALLOWED_DIGESTS,
    ALLOWED_SIGNATURE_METHODS,
    ALLOWED_TRANSFORMS,
    C14N_METHODS,
    DS_NS,
    DS_SIGNATURE,
    is_weak,
)
from xmppbridge.signing.keys import as_utc, fingerprint, key_strength_problem
from xmppbridge.signing.wireform import wire_bytes

_DS = {"ds": DS_NS}
_TRUST_KEY = "trust.anchors"
_CERT_SUFFIXES = (".pem", ".crt")


@dataclass(frozen=True)
class TrustStore:
    """Pinned member certificates, keyed by SHA-256 fingerprint (lowercase hex)."""

    certificates: Mapping[str, x509.Certificate]

    @classmethod
    def from_certificates(cls, certificates: Iterable[x509.Certificate]) -> TrustStore:
        pinned: dict[str, x509.Certificate] = {}
        for certificate in certificates:
            problem = key_strength_problem(certificate.public_key())
            if problem:
                subject = certificate.subject.rfc4514_string()
                raise ConfigError("<certificates>", _TRUST_KEY, f"{subject}: {problem}")
            pinned[fingerprint(certificate)] = certificate
        return cls(MappingProxyType(pinned))

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> TrustStore:
        """Load every certificate in the given PEM files and directories (``*.pem``, ``*.crt``, not
        recursive); a file may hold several certificates."""
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        pinned: dict[str, x509.Certificate] = {}
        for path in map(Path, paths):
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix.lower() in _CERT_SUFFIXES)
            elif path.is_file():
                files = [path]
            else:
                raise ConfigError(str(path), _TRUST_KEY, "no such file or directory")
            for file in files:
                for certificate in _load_pem_certificates(file):
                    pinned[fingerprint(certificate)] = certificate
        return cls(MappingProxyType(pinned))

    def get(self, fingerprint_hex: str) -> x509.Certificate | None:
        return self.certificates.get(fingerprint_hex.lower())

    def __len__(self) -> int:
        return len(self.certificates)


def _load_pem_certificates(file: Path) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(file.read_bytes())
    except OSError as exc:
        raise ConfigError(str(file), _TRUST_KEY, f"cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(file), _TRUST_KEY, f"no usable PEM certificate: {exc}") from None
    for certificate in certificates:
        problem = key_strength_problem(certificate.public_key())
        if problem:
            subject = certificate.subject.rfc4514_string()
            raise ConfigError(str(file), _TRUST_KEY, f"certificate {subject}: {problem}")
    return certificates


@dataclass(frozen=True)
class Verified:
    """A verified document. ``signed_root`` is signxml's ``signed_xml``: the signed content only (the
    signature itself removed), re-parsed from its canonical form. Use nothing else from the input."""

    signed_root: etree._Element
    signer_subject: str  # RFC 4514
    signer_fingerprint: str
    certificate: x509.Certificate


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

    ``now`` is the time at which the certificate must be valid (default: the current time; a naive
    datetime is read as UTC).
    """
    if isinstance(data, etree._Element):
        # Without the tail: an element taken out of a stanza may be followed by text of its parent.
        data = etree.tostring(data, with_tail=False)
    elif not isinstance(data, bytes):
        raise TypeError(f"verify_document takes bytes or an lxml element (use verify_wire for {type(data)})")
    root = parse_untrusted(data, max_bytes=max_bytes)
    ns = _iodef_namespace(root)
    signature = _the_signature(root, ns)
    _check_signed_info(signature)

    certificate = _trusted_signer(signature, trust)
    subject = certificate.subject.rfc4514_string()
    when = as_utc(now)
    _check_validity(certificate, subject, when)

    config = SignatureConfiguration(
        # Pin the signature to the place we found it: with exactly one ds:Signature this is belt and braces.
        location=_location(root, signature),
        expect_references=1,
        signature_methods=frozenset(SignatureMethod(m) for m in ALLOWED_SIGNATURE_METHODS),
        digest_algorithms=frozenset(DigestAlgorithm(d) for d in ALLOWED_DIGESTS),
        verification_time=when,
    )
    try:
        result = XMLVerifier().verify(root, x509_cert=certificate, expect_config=config)
    except InvalidDigest as exc:
        raise SignatureRejected(
            f"the document was changed after {subject} signed it: {exc}", reason="bad-digest"
        ) from exc
    except InvalidCertificate as exc:
        raise SignatureRejected(f"certificate of {subject} refused: {exc}", reason="bad-certificate") from exc
    except InvalidSignature as exc:
        raise SignatureRejected(
            f"signature value does not verify with the certificate of {subject}: {exc}",
            reason="bad-signature",
        ) from exc
    except (InvalidInput, etree.DocumentInvalid) as exc:
        raise SignatureRejected(f"malformed signature: {exc}", reason="malformed-signature") from exc
    except (SignXMLException, ValueError) as exc:  # e.g. broken base64 in SignatureValue
        raise SignatureRejected(f"signature check failed: {exc}", reason="bad-signature") from exc

    signed_root = result.signed_xml  # type: ignore[union-attr]  # expect_references=1 -> one result
    if signed_root is None or signed_root.tag != root.tag:
        raise SignatureRejected("the signature does not cover the IODEF-Document", reason="bad-reference")
    return Verified(
        signed_root=signed_root,
        signer_subject=subject,
        signer_fingerprint=fingerprint(certificate),
        certificate=certificate,
    )


def _iodef_namespace(root: etree._Element) -> str:
    qname = etree.QName(root)
    if qname.localname != "IODEF-Document" or qname.namespace not in VERSION_BY_NS:
        raise NotIodef(f"the root element is {root.tag}, not an IODEF 1.0 or 2.0 IODEF-Document")
    return qname.namespace


def _the_signature(root: etree._Element, ns: str) -> etree._Element:
    signatures = list(root.iter(DS_SIGNATURE))
    if not signatures:
        raise SignatureRejected("the document is not signed (no ds:Signature)", reason="signature-missing")
    if len(signatures) > 1:
        raise SignatureRejected(
            f"the document carries {len(signatures)} signatures; exactly one is accepted",
            reason="signature-wrapping",
        )
    # A second IODEF-Document hidden inside the signed one invites confusion about what was signed.
    documents = [e for e in root.iter("{*}IODEF-Document") if etree.QName(e).namespace in VERSION_BY_NS]
    if len(documents) > 1:
        raise SignatureRejected("the document contains a nested IODEF-Document", reason="signature-wrapping")
    signature = signatures[0]
    parent = signature.getparent()
    if parent is None or parent.tag != f"{{{ns}}}AdditionalData":
        where = root.getroottree().getpath(signature)
        raise SignatureRejected(
            f"the signature must sit in an IODEF AdditionalData element, found at {where}",
            reason="signature-misplaced",
        )
    return signature


def _check_signed_info(signature: etree._Element) -> None:
    signed_info = signature.find("ds:SignedInfo", _DS)
    if signed_info is None:
        raise SignatureRejected("ds:Signature has no SignedInfo", reason="malformed-signature")
    references = signed_info.findall("ds:Reference", _DS)
    if len(references) != 1 or references[0].get("URI") != "":
        uris = [r.get("URI") for r in references]
        raise SignatureRejected(
            f'the signature must have exactly one Reference with URI="" (the whole document); found {uris}',
            reason="bad-reference",
        )
    reference = references[0]
    _check_algorithm(signed_info.find("ds:CanonicalizationMethod", _DS), C14N_METHODS, "canonicalization")
    _check_algorithm(signed_info.find("ds:SignatureMethod", _DS), ALLOWED_SIGNATURE_METHODS, "signature")
    _check_algorithm(reference.find("ds:DigestMethod", _DS), ALLOWED_DIGESTS, "digest")
    for transform in reference.findall("ds:Transforms/ds:Transform", _DS):
        _check_algorithm(transform, ALLOWED_TRANSFORMS, "transform")


def _check_algorithm(element: etree._Element | None, allowed: frozenset[str], what: str) -> None:
    if element is None:
        raise SignatureRejected(f"the signature names no {what} algorithm", reason="malformed-signature")
    algorithm = element.get("Algorithm", "")
    if algorithm in allowed:
        return
    if is_weak(algorithm):
        raise SignatureRejected(
            f"{what} algorithm {algorithm} is too weak (SHA-1/MD5); ask the sender to sign with SHA-256",
            reason="weak-algorithm",
        )
    raise SignatureRejected(f"{what} algorithm {algorithm!r} is not accepted", reason="unsupported-algorithm")


def _trusted_signer(signature: etree._Element, trust: TrustStore) -> x509.Certificate:
    texts = [e.text or "" for e in signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _DS)]
    if not texts:
        raise SignatureRejected(
            "the signature carries no certificate (KeyInfo/X509Data/X509Certificate); "
            "the sender must embed their signing certificate",
            reason="certificate-missing",
        )
    embedded = []
    for text in texts:
        try:
            embedded.append(x509.load_der_x509_certificate(base64.b64decode("".join(text.split()))))
        except (ValueError, binascii.Error) as exc:
            raise SignatureRejected(f"unreadable X509Certificate: {exc}", reason="bad-certificate") from None
    # X509Data may carry a chain; the pinned one among them is the signer.
    for certificate in embedded:
        pinned = trust.get(fingerprint(certificate))
        if pinned is not None:
            return pinned
    leaf = embedded[0]
    subject, fp = leaf.subject.rfc4514_string(), fingerprint(leaf)
    raise UnknownSigner(
        f"document signed by unknown signer {subject} (SHA-256 fingerprint {fp}); if this member should be "
        f"trusted, obtain their certificate out of band, check the fingerprint and add it to {_TRUST_KEY}"
    )


def _check_validity(certificate: x509.Certificate, subject: str, when: datetime.datetime) -> None:
    if when > certificate.not_valid_after_utc:
        raise SignatureRejected(
            f"the certificate of {subject} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
            f"ask the member for their new certificate and add it to {_TRUST_KEY}",
            reason="certificate-expired",
        )
    if when < certificate.not_valid_before_utc:
        raise SignatureRejected(
            f"the certificate of {subject} is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check both clocks)",
            reason="certificate-not-yet-valid",
        )


def _location(root: etree._Element, signature: etree._Element) -> str:
    """The signxml location path of the signature's parent, e.g. ``./{ns}Incident/{ns}AdditionalData/``."""
    steps: list[str] = []
    node = signature.getparent()
    while node is not None and node is not root:
        steps.append(node.tag)
        node = node.getparent()
    return "./" + "".join(f"{tag}/" for tag in reversed(steps))
