"""Interoperability with the real xmlsec1 binary (libxmlsec1, OpenSSL), in both directions.

(a) documents we sign verify with ``xmlsec1 --verify``, relay signatures included; (b) documents xmlsec1
signs from a ``ds:``-prefixed template verify with ``verify_document`` on the bytes as they are.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from tests.pki import (
    ECDSA_SHA256,
    RSA_SHA1,
    RSA_SHA256,
    SHA1,
    XMLSEC1,
    Member,
    make_member,
    signing_samples,
    xmlsec1,
    xmlsec1_sign,
    xmlsec1_template,
)
from xmppbridge.errors import SignatureRejected
from xmppbridge.iodef.schema import schema_errors
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.verify import TrustStore, verify_document, verify_wire

pytestmark = pytest.mark.skipif(
    not XMLSEC1.exists(), reason=f"{XMLSEC1} is not installed (Debian package xmlsec1); interop not tested"
)

SAMPLES = {p.name: p for p in signing_samples()}
# One of each IODEF version, plus the document with prefixes, xsi attributes and non-ASCII text.
INTEROP_SAMPLES = [
    SAMPLES[name] for name in ("iodef1-two-incidents.xml", "iodef2-minimal.xml", "iodef2-xsi-rich.xml")
]
METHOD = {"rsa": RSA_SHA256, "ec": ECDSA_SHA256}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xmlsec1")


@pytest.fixture(scope="module")
def members(workdir: Path) -> dict[str, Member]:
    return {kind: make_member(workdir, f"interop-{kind}", kind) for kind in ("rsa", "ec")}


@pytest.fixture(scope="module")
def trust(members: dict[str, Member]) -> TrustStore:
    return TrustStore.from_paths([m.cert_path for m in members.values()])


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("sample", INTEROP_SAMPLES, ids=[p.name for p in INTEROP_SAMPLES])
def test_xmlsec1_verifies_our_signatures(
    sample: Path, kind: str, members: dict[str, Member], workdir: Path
) -> None:
    member = members[kind]
    signed = sign_document(etree.parse(str(sample)).getroot(), member.identity)
    path = workdir / f"ours-{kind}-{sample.name}"
    path.write_bytes(signed)

    # --pubkey-cert-pem: take the key from this certificate. xmlsec1 still tries to verify the embedded
    # self-signed certificate and logs an error about it, then verifies with the given key: exit 0.
    result = xmlsec1("--verify", "--pubkey-cert-pem", member.cert_path, path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr
    # --trusted-pem: verify the embedded certificate against this trusted one (pinning), silently.
    result = xmlsec1("--verify", "--trusted-pem", member.cert_path, path)
    assert result.returncode == 0, result.stderr

    tampered = workdir / f"ours-{kind}-tampered-{sample.name}"
    tampered.write_bytes(signed.replace(b"</IncidentID>", b"X</IncidentID>", 1))
    result = xmlsec1("--verify", "--trusted-pem", member.cert_path, tampered)
    assert result.returncode != 0
    assert "FAIL" in result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_we_verify_xmlsec1_signatures(
    version: str, kind: str, members: dict[str, Member], trust: TrustStore, workdir: Path
) -> None:
    member = members[kind]
    signed = xmlsec1_sign(xmlsec1_template(version, METHOD[kind]), member, workdir, f"xs-{kind}-v{version}")
    assert b"<ds:Signature" in signed and b"<ds:X509Certificate>" in signed  # prefixed, cert filled in

    verified = verify_document(signed, trust)
    assert verified.signer_fingerprint == member.identity.fingerprint
    assert verified.signed_root.find(".//{*}IncidentID").text.startswith("NET-2024-")
    assert schema_errors(etree.fromstring(signed)) == []

    tampered = signed.replace(b"NET-2024-", b"NET-2025-")
    with pytest.raises(SignatureRejected) as excinfo:
        verify_document(tampered, trust)
    assert excinfo.value.reason == "bad-digest"

    # Why the bridge signs the wire form: the ds: prefix is inside the canonical SignedInfo, and it does
    # not survive XMPP. Such a document verifies from a file, not after a trip through a server.
    with pytest.raises(SignatureRejected):
        verify_wire(etree.fromstring(signed), trust)


@pytest.mark.parametrize(
    "digest_method", [SHA1, "http://www.w3.org/2001/04/xmlenc#sha256"], ids=["sha1-digest", "sha256-digest"]
)
def test_rsa_sha1_from_xmlsec1_is_weak(
    digest_method: str, members: dict[str, Member], trust: TrustStore, workdir: Path
) -> None:
    template = xmlsec1_template("2", RSA_SHA1, digest_method)
    signed = xmlsec1_sign(template, members["rsa"], workdir, f"xs-sha1-{digest_method[-4:]}")
    # A genuine signature (xmlsec1 itself accepts it) that we refuse on algorithm grounds alone.
    path = workdir / "sha1.xml"
    path.write_bytes(signed)
    assert xmlsec1("--verify", "--trusted-pem", members["rsa"].cert_path, path).returncode == 0
    with pytest.raises(SignatureRejected, match="too weak") as excinfo:
        verify_document(signed, trust)
    assert excinfo.value.reason == "weak-algorithm"


@pytest.mark.parametrize(("originator", "relay"), [("rsa", "ec"), ("ec", "rsa")])
def test_xmlsec1_verifies_each_signature_of_a_relayed_document(
    originator: str, relay: str, members: dict[str, Member], workdir: Path
) -> None:
    document = etree.parse(str(SAMPLES["iodef2-minimal.xml"])).getroot()
    signed = sign_document(document, members[originator].identity)
    relayed = relay_sign(signed, members[relay].identity)
    path = workdir / f"relayed-{originator}-{relay}.xml"
    path.write_bytes(relayed)
    # The relay signature covers the whole document, the originator's signature included.
    result = xmlsec1("--verify", "--trusted-pem", members[relay].cert_path,
                     "--node-xpath", "(//*[local-name()='Signature'])[2]", path)
    assert result.returncode == 0, result.stderr
    # The originator's covers the document as it was before the relay added its AdditionalData.
    root = etree.fromstring(relayed)
    root.remove(root[-1])
    path.write_bytes(etree.tostring(root))
    assert xmlsec1("--verify", "--trusted-pem", members[originator].cert_path, path).returncode == 0
