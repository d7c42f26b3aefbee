"""Signing identities: a private key loaded once, with its certificate.

signxml re-parses a PEM key on every ``sign()`` call, and cryptography's RSA key validation on load costs
~50 ms (INTEROP.md §5), so the bridge loads the key object once at start-up and hands the object to the
signer. The same key-strength policy is applied to our own key and to the members' pinned certificates.
"""

from __future__ import annotations

import datetime
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from xmppbridge.errors import BridgeError

MIN_RSA_BITS = 2048
# NIST curves of 256 bits and more; smaller or non-NIST curves have no XML-DSig algorithm we accept.
ALLOWED_CURVES = ("secp256r1", "secp384r1", "secp521r1")

# XML-DSig signature methods we use per key type (RFC 6931 identifiers).
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class IdentityError(BridgeError):
    """The signing key or certificate is unusable; the message names the file and the problem."""


@dataclass(frozen=True)
class SigningIdentity:
    """Everything ``sign_document`` needs, loaded once."""

    private_key: PrivateKey
    certificate: x509.Certificate
    cert_pem: bytes
    fingerprint: str  # SHA-256 of the certificate DER, lowercase hex without separators
    # CA certificates between ours and a consortium CA, embedded in every signature so that receivers
    # can build the chain; empty for a pinned (self-signed) certificate.
    intermediates: tuple[x509.Certificate, ...] = ()

    @property
    def subject(self) -> str:
        return subject_text(self.certificate)

    @property
    def signature_method(self) -> str:
        """The XML-DSig SignatureMethod URI matching the key type."""
        return RSA_SHA256 if isinstance(self.private_key, rsa.RSAPrivateKey) else ECDSA_SHA256

    @classmethod
    def from_objects(cls, private_key: PrivateKey, certificate: x509.Certificate,
                     intermediates: tuple[x509.Certificate, ...] = ()) -> SigningIdentity:
        """An identity from already loaded objects; checks key strength and that key and certificate match,
        but not the validity period (tests build expired identities this way)."""
        problem = key_strength_problem(private_key.public_key())
        if problem:
            raise IdentityError(f"signing key refused: {problem}")
        if _spki(private_key.public_key()) != _spki(certificate.public_key()):
            raise IdentityError("the private key does not belong to the certificate (public keys differ)")
        return cls(
            private_key=private_key,
            certificate=certificate,
            cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
            fingerprint=fingerprint(certificate),
            intermediates=intermediates,
        )


@functools.lru_cache(maxsize=256)  # the same few certificates sign and are checked again and again
def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 fingerprint of the certificate, lowercase hex: the key of the trust store."""
    return certificate.fingerprint(hashes.SHA256()).hex()


@functools.lru_cache(maxsize=256)  # messages and authorisation name the same few signers again and again
def subject_text(certificate: x509.Certificate) -> str:
    """The certificate's subject DN as RFC 4514 text."""
    return certificate.subject.rfc4514_string()


def as_utc(moment: datetime.datetime | None) -> datetime.datetime:
    """``moment`` as an aware UTC datetime (a naive one is read as UTC); the current time for None."""
    if moment is None:
        return datetime.datetime.now(datetime.UTC)
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment


def key_strength_problem(public_key: CertificatePublicKeyTypes) -> str | None:
    """Why this public key is not acceptable for document signatures, or None when it is."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            return f"RSA key of {public_key.key_size} bits is too short (need at least {MIN_RSA_BITS})"
        return None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ALLOWED_CURVES:
            return f"EC curve {public_key.curve.name} is not allowed (use P-256, P-384 or P-521)"
        return None
    return f"{type(public_key).__name__} keys are not supported (use RSA >= {MIN_RSA_BITS} bits or EC P-256+)"


def load_identity(
    key_path: str | os.PathLike[str],
    cert_path: str | os.PathLike[str],
    *,
    password: bytes | None = None,
    now: datetime.datetime | None = None,
) -> SigningIdentity:
    """Load the private key (once) and its certificate; refuse weak keys, mismatches and expired certs."""
    identity = read_identity(key_path, cert_path, password=password)
    _check_usable_for_signing(identity.certificate, Path(cert_path), as_utc(now))
    return identity


def read_identity(
    key_path: str | os.PathLike[str],
    cert_path: str | os.PathLike[str],
    *,
    password: bytes | None = None,
) -> SigningIdentity:
    """The key and certificate files as an identity: unreadable files, weak keys and a key that is not the
    certificate's are refused, the validity period is not judged (``load_identity`` does at start-up, a
    reload in ``policy.ownkey``)."""
    key_path, cert_path = Path(key_path), Path(cert_path)
    try:
        key_data = key_path.read_bytes()
        cert_data = cert_path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        private_key = serialization.load_pem_private_key(key_data, password=password)
    except (ValueError, TypeError) as exc:
        # TypeError: password given for an unencrypted key or missing for an encrypted one.
        raise IdentityError(f"{key_path}: not a usable PEM private key: {exc}") from None
    if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise IdentityError(
            f"{key_path}: {type(private_key).__name__} keys are not supported "
            f"(use RSA >= {MIN_RSA_BITS} bits or EC P-256+)"
        )
    try:
        # Our certificate first, then any intermediates of a consortium CA (a usual PEM chain file).
        certificate, *intermediates = x509.load_pem_x509_certificates(cert_data)
    except ValueError as exc:
        raise IdentityError(f"{cert_path}: not a PEM certificate: {exc}") from None

    try:
        return SigningIdentity.from_objects(private_key, certificate, tuple(intermediates))
    except IdentityError as exc:
        raise IdentityError(f"{key_path} / {cert_path}: {exc}") from None


def _check_usable_for_signing(certificate: x509.Certificate, cert_path: Path, now: datetime.datetime) -> None:
    # Receivers reject signatures made with a certificate outside its validity period or without
    # digitalSignature, so fail at start-up rather than publish documents nobody will accept.
    problem = signing_certificate_problem(certificate, now)
    if problem:
        raise IdentityError(f"{cert_path}: {problem.reason}: certificate {problem.text}; "
                            f"{SIGNER_FIXES[problem.reason]}")


@dataclass(frozen=True)
class CertificateProblem:
    """Why every receiver refuses signatures made with a certificate: ``reason`` is the code receivers
    quarantine the item under, ``text`` what is wrong (callers add who it is and what to do)."""

    reason: str  # certificate-expired, certificate-not-yet-valid, wrong-key-usage or weak-key
    text: str


# What the owner of a signing certificate does about each problem (the bridge at start-up and at publish).
SIGNER_FIXES = {
    "certificate-expired": "issue a new certificate (signing.cert), send it to the members who pin it, "
                           "and reload the bridge (see README \"Membership churn\", rotate a key)",
    "certificate-not-yet-valid": "check the system clock, or wait until the certificate is valid",
    "wrong-key-usage": "issue a certificate whose KeyUsage includes digitalSignature",
    "weak-key": f"generate an RSA key of {MIN_RSA_BITS}+ bits or an EC P-256+ key and a certificate for it",
}


def validity_problem(certificate: x509.Certificate, when: datetime.datetime) -> CertificateProblem | None:
    """Outside its validity period at ``when`` (RFC 5280 §4.1.2.5)."""
    if when > certificate.not_valid_after_utc:
        return CertificateProblem("certificate-expired",
                                  f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if when < certificate.not_valid_before_utc:
        start = certificate.not_valid_before_utc
        return CertificateProblem("certificate-not-yet-valid",
                                  f"is not valid before {start:%Y-%m-%d %H:%M} UTC")
    return None


def usage_problem(certificate: x509.Certificate) -> CertificateProblem | None:
    """A KeyUsage extension without digitalSignature (RFC 5280 §4.2.1.3); no extension allows any use."""
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if usage.digital_signature:
        return None
    return CertificateProblem("wrong-key-usage", "does not allow digitalSignature (KeyUsage)")


def signing_certificate_problem(certificate: x509.Certificate,
                                when: datetime.datetime) -> CertificateProblem | None:
    """What every receiver refuses about a signer's certificate itself (trust.TrustStore.resolve), in
    the order it checks: validity, key strength, key usage. The chain and revocation depend on each
    receiver's trust anchors and are not judged here."""
    problem = validity_problem(certificate, when)
    if problem:
        return problem
    weak = key_strength_problem(certificate.public_key())
    if weak:
        return CertificateProblem("weak-key", f"has a key that is refused: {weak}")
    return usage_problem(certificate)


def generate_identity_files(
    common_name: str,
    key_path: str | os.PathLike[str],
    cert_path: str | os.PathLike[str],
    *,
    kind: Literal["rsa", "ec"] = "rsa",
    days: int = 365,
    overwrite: bool = False,
    domains: tuple[str, ...] = (),
) -> SigningIdentity:
    """Write a new private key (PKCS#8 PEM, mode 0600) and a self-signed certificate for it.

    ``domains`` go into the certificate's subjectAltName: the IncidentID domains this member speaks for.

    Refuses to overwrite existing files unless ``overwrite``: a replaced key silently breaks every
    member that pinned the old certificate.
    """
    key_path, cert_path = Path(key_path), Path(cert_path)
    if not overwrite:
        for path in (key_path, cert_path):
            if path.exists():
                raise IdentityError(f"{path} already exists; refusing to replace a signing identity")
    if kind == "rsa":
        private_key: PrivateKey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ec":
        private_key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"kind must be 'rsa' or 'ec', not {kind!r}")
    certificate = self_signed_certificate(private_key, common_name, days=days, domains=domains)

    for path in (key_path, cert_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, key_pem)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return SigningIdentity.from_objects(private_key, certificate)


def self_signed_certificate(
    private_key: PrivateKey,
    common_name: str,
    *,
    days: int = 365,
    not_before: datetime.datetime | None = None,
    domains: tuple[str, ...] = (),
) -> x509.Certificate:
    """A self-signed end-entity certificate for document signing (members pin it; no CA involved)."""
    # Backdate a little so a receiver whose clock is slightly behind does not see "not yet valid".
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public_key = private_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if domains:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(domain) for domain in domains]), critical=False
        )
    return builder.sign(private_key, hashes.SHA256())


def _write_private(path: Path, data: bytes) -> None:
    # Create with 0600 from the start instead of chmod-ing afterwards, so the key is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an overwritten file keeps its old mode otherwise
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
