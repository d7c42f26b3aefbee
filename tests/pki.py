"""Test helpers for the signing tests: throw-away identities, odd certificates, xmlsec1 and sample documents.

Nothing here touches the network; identities are generated into pytest temporary directories.
"""

from __future__ import annotations

import datetime
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from xmppbridge.signing.keys import SigningIdentity, generate_identity_files, self_signed_certificate

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "signing"
# Copies of the reference set's examples (shared/ is not part of the repository).
REFERENCE_EXAMPLES = Path(__file__).resolve().parent / "data" / "iodef"
REFERENCE_EXAMPLE_NAMES = ("iodef1-minimal.xml", "iodef2-minimal.xml", "iodef2-signature-placement-skeleton.xml")
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
    paths = [REFERENCE_EXAMPLES / name for name in REFERENCE_EXAMPLE_NAMES] + sorted((REPO / "config" / "samples").glob("*.xml"))
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
