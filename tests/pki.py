"""Test helpers for the signing tests: throw-away identities, odd certificates, xmlsec1 and sample documents.

Nothing here touches the network; identities are generated into pytest temporary directories.
"""

from __future__ import annotations

import datetime
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from xmppbridge.signing.keys import (
    PrivateKey,
    SigningIdentity,
    fingerprint,
    generate_identity_files,
    self_signed_certificate,
)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "signing"
# Copies of the reference set's examples (shared/ is not part of the repository).
REFERENCE_EXAMPLES = Path(__file__).resolve().parent / "data" / "iodef"
REFERENCE_EXAMPLE_NAMES = (
    "iodef1-minimal.xml", "iodef2-minimal.xml", "iodef2-signature-placement-skeleton.xml"
)
XMLSEC1 = Path("/usr/bin/xmlsec1")

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"


@dataclass(frozen=True)
class Member:
    """A generated signing identity and the files it lives in."""

    name: str
    identity: SigningIdentity
    key_path: Path
    cert_path: Path


def make_member(directory: Path, name: str, kind: str) -> Member:
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    identity = generate_identity_files(name, key_path, cert_path, kind=kind)  # type: ignore[arg-type]
    return Member(name, identity, key_path, cert_path)


def identity_valid_between(kind: str, not_before: datetime.datetime, days: int) -> SigningIdentity:
    """An identity whose certificate is valid from ``not_before`` for ``days`` (e.g. long expired)."""
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed_certificate(key, f"{kind}-dated", days=days, not_before=not_before)
    return SigningIdentity.from_objects(key, certificate)


def signing_samples() -> list[Path]:
    """Every sample document the signer must handle: reference examples, demo samples, our own odd ones."""
    paths = [REFERENCE_EXAMPLES / name for name in REFERENCE_EXAMPLE_NAMES]
    paths += sorted((REPO / "config" / "samples").glob("*.xml"))
    paths += [DATA / "iodef2-xsi-rich.xml", DATA / "iodef1-two-incidents.xml"]
    return [p for p in paths if p.is_file()]


def xmlsec1_template(version: str, signature_method: str, digest_method: str = SHA256) -> bytes:
    text = (DATA / f"xmlsec1-template-iodef{version}.xml").read_text(encoding="utf-8")
    filled = string.Template(text).substitute(signature_method=signature_method, digest_method=digest_method)
    return filled.encode("utf-8")


def xmlsec1(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(XMLSEC1), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def xmlsec1_sign(template: bytes, member: Member, workdir: Path, name: str) -> bytes:
    """Sign ``template`` with the real xmlsec1 binary; the certificate goes into the empty X509Data."""
    template_path, out_path = workdir / f"{name}.tmpl.xml", workdir / f"{name}.signed.xml"
    template_path.write_bytes(template)
    keys = f"{member.key_path},{member.cert_path}"
    result = xmlsec1("--sign", "--privkey-pem", keys, "--output", out_path, template_path)
    assert result.returncode == 0, result.stderr
    return out_path.read_bytes()


# --- a consortium CA -------------------------------------------------------------------------------------

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
_SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
_SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


@dataclass(frozen=True)
class Authority:
    key: PrivateKey
    certificate: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Consortium"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(*, sign: bool = False, encipher: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=encipher,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def make_ca(common_name: str = "Consortium Root CA", *, parent: Authority | None = None,
            not_before: datetime.datetime | None = None, days: int = 3650) -> Authority:
    """A root CA (RSA, so that SHA-1 certificates can be made below it), or an intermediate of ``parent``."""
    key = rsa.generate_private_key(65537, 2048)
    start = not_before or NOW - 365 * DAY
    issuer_key = parent.key if parent else key
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(parent.certificate.subject if parent else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + days * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if parent is None else 0),
                       critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                       critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return Authority(key, certificate)


def issue(ca: Authority, common_name: str, *, kind: str = "ec", domains: tuple[str, ...] = (),
          usage: str | None = "sign", not_before: datetime.datetime | None = None, days: int = 365,
          key: PrivateKey | None = None, sha1: bool = False) -> SigningIdentity:
    """A member certificate issued by ``ca``: ``domains`` become subjectAltName dNSNames; ``usage`` is
    "sign" (digitalSignature), "encipher" (keyEncipherment only) or None (no KeyUsage extension)."""
    if key is None:
        key = (rsa.generate_private_key(65537, 2048) if kind == "rsa"
               else ec.generate_private_key(ec.SECP256R1()))
    start = not_before or NOW - DAY
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + days * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    if usage is not None:
        builder = builder.add_extension(_usage(sign=usage == "sign", encipher=usage == "encipher"),
                                        critical=True)
    if domains:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]),
                                        critical=False)
    certificate = builder.sign(ca.key, hashes.SHA256())
    if sha1:
        certificate = _resigned_with_sha1(certificate, ca)
    return SigningIdentity(private_key=key, certificate=certificate,  # no key-strength check: tests need
                           cert_pem=b"", fingerprint=fingerprint(certificate))  # weak keys too


def _resigned_with_sha1(certificate: x509.Certificate, ca: Authority) -> x509.Certificate:
    """The same certificate signed with SHA-1: cryptography refuses to build one, so swap the algorithm
    identifier in the DER (same length) and re-sign the to-be-signed part with the low-level API."""
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    der = certificate.public_bytes(serialization.Encoding.DER)
    tbs = certificate.tbs_certificate_bytes
    weak_tbs = tbs.replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA)
    signature = ca.key.sign(weak_tbs, padding.PKCS1v15(), hashes.SHA1())
    assert len(signature) == len(certificate.signature)
    der = der.replace(tbs, weak_tbs).replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA).replace(
        certificate.signature, signature)
    return x509.load_der_x509_certificate(der)


def make_crl(ca: Authority, revoked: list[x509.Certificate], *, last_update: datetime.datetime | None = None,
             days: int = 7) -> x509.CertificateRevocationList:
    start = last_update or NOW - DAY
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
               .last_update(start).next_update(start + days * DAY))
    for certificate in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(certificate.serial_number)
            .revocation_date(NOW - datetime.timedelta(hours=1)).build())
    return builder.sign(ca.key, hashes.SHA256())


def pem(*objects: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objects)
