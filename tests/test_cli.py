"""The `xmppbridge` command as a user runs it: validate, sign, verify, check-config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import SAMPLES
from tests.pki import DAY, NOW
from xmppbridge.paths.publish import speaks_for
from xmppbridge.signing.keys import (
    fingerprint,
    generate_identity_files,
    load_identity,
    self_signed_certificate,
)
from xmppbridge.store import Store

DATA = Path(__file__).resolve().parent / "data" / "iodef"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xmppbridge.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_validate_json_prints_one_object_per_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<IODEF-Document version="2.0" xmlns="urn:ietf:params:xml:ns:iodef-2.0"/>')
    junk = tmp_path / "junk.xml"
    junk.write_text("<<not xml")
    result = run("validate", "--json", DATA / "iodef1-minimal.xml", SAMPLES / "07-mixed-white-red-v2.xml",
                 bad, junk)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    expected_files = [DATA / "iodef1-minimal.xml", SAMPLES / "07-mixed-white-red-v2.xml", bad, junk]
    assert [line["file"] for line in lines] == [str(f) for f in expected_files]
    v1, mixed, invalid, malformed = lines
    assert v1 == {"file": str(DATA / "iodef1-minimal.xml"), "valid": True, "version": "1.0", "errors": [],
                  "incidents": [{"id_name": "csirt.example.org", "id": "2024-0001",
                                 "restriction": "need-to-know", "purpose": "reporting",
                                 "node": "iodef/need-to-know/reporting"}]}
    assert [(i["restriction"], i["node"]) for i in mixed["incidents"]] == [
        ("white", "iodef/public/reporting"), ("red", "iodef/private/mitigation")]
    assert invalid["valid"] is False and invalid["errors"]
    assert malformed["valid"] is False and malformed["version"] is None
    assert "malformed-xml" in malformed["errors"][0]


def test_validate_exit_zero_only_when_all_valid() -> None:
    assert run("validate", *sorted(SAMPLES.glob("*.xml"))).returncode == 0


def test_absent_restriction_is_reported_as_private() -> None:
    result = run("validate", "--json", SAMPLES / "06-bruteforce-absent-v1.xml")
    [incident] = json.loads(result.stdout)["incidents"]
    assert incident["restriction"] == "private" and incident["node"].startswith("iodef/private/")


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_sign_then_verify_and_xmlsec1_agrees(tmp_path: Path, kind: str) -> None:
    generate_identity_files("CSIRT A", tmp_path / "k.pem", tmp_path / "c.pem", kind=kind)
    signed = tmp_path / "signed.xml"
    result = run("sign", "--key", tmp_path / "k.pem", "--cert", tmp_path / "c.pem",
                 SAMPLES / "03-malware-need-to-know-v1.xml", "-o", signed)
    assert result.returncode == 0, result.stderr

    verified = run("verify", "--trust", tmp_path / "c.pem", signed)
    assert verified.returncode == 0, verified.stdout
    assert "valid signature by CN=CSIRT A" in verified.stdout
    assert run("validate", signed).returncode == 0  # still schema-valid with the signature in place

    if shutil.which("xmlsec1"):
        xmlsec = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", tmp_path / "c.pem", signed],
                                capture_output=True, text=True)
        assert xmlsec.returncode == 0, xmlsec.stderr

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(signed.read_bytes().replace(b"192.0.2", b"192.0.9"))
    rejected = run("verify", "--trust", tmp_path / "c.pem", tampered)
    assert rejected.returncode == 1 and "INVALID: bad-digest" in rejected.stdout

    generate_identity_files("Someone else", tmp_path / "o.key", tmp_path / "o.pem")
    unknown = run("verify", "--trust", tmp_path / "o.pem", signed)
    assert unknown.returncode == 1 and "unknown-signer" in unknown.stdout


def test_sign_refuses_an_invalid_document(tmp_path: Path) -> None:
    generate_identity_files("CSIRT A", tmp_path / "k.pem", tmp_path / "c.pem")
    bad = tmp_path / "bad.xml"
    bad.write_text('<IODEF-Document version="2.0" xmlns="urn:ietf:params:xml:ns:iodef-2.0"/>')
    result = run("sign", "--key", tmp_path / "k.pem", "--cert", tmp_path / "c.pem", bad)
    assert result.returncode == 1 and "schema-invalid" in result.stderr and not result.stdout


def test_check_config_reports_errors_with_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("component: {jid: bridge.a.test, secret: s}\npubsub: {service: pubsub.a.test}\n"
                      "signing: {key: k.pem, cert: c.pem}\n")
    result = run("check-config", "-c", config)
    assert result.returncode == 2
    assert f"{config}: signing.key: " in result.stderr and "does not exist" in result.stderr

    generate_identity_files("CSIRT A", tmp_path / "k.pem", tmp_path / "c.pem")
    result = run("check-config", "-c", config)
    assert result.returncode == 0, result.stderr
    assert "OK: bridge.a.test publishes to pubsub.a.test under 'iodef/' for no IncidentID domain" \
        in result.stdout  # a certificate without subjectAltName, and no signing.domains


def publish_config(tmp_path: Path, *, signing: str = "{key: k.pem, cert: c.pem}") -> Path:
    """A bridge config for `publish`; no bridge runs, so whatever is accepted stays in the outbox."""
    config = tmp_path / "bridge.yaml"
    config.write_text("component: {jid: bridge.a.test, secret: s}\npubsub: {service: pubsub.a.test}\n"
                      f"signing: {signing}\nstore: {{path: a.sqlite}}\nfeed: {{listen: '127.0.0.1:8080'}}\n")
    return config


def outbox_depth(tmp_path: Path) -> int:
    with Store(tmp_path / "a.sqlite") as store:
        return store.outbox_depth()


def test_publish_refuses_an_incident_id_every_peer_would_quarantine(tmp_path: Path) -> None:
    generate_identity_files("CSIRT A", tmp_path / "k.pem", tmp_path / "c.pem", domains=("a.test",))
    foreign = tmp_path / "foreign.xml"
    foreign.write_bytes((SAMPLES / "01-phishing-public-v2.xml").read_bytes().replace(
        b'name="csirt.a.test"', b'name="csirt.b.test"'))
    result = run("publish", "-c", publish_config(tmp_path), "--timeout", "0.2", foreign)
    assert result.returncode == 1 and not result.stdout
    assert f"{foreign}: rejected: domain-not-allowed: IncidentID name 'csirt.b.test'" in result.stderr
    assert "speaks for a.test" in result.stderr and "add that domain to signing.domains" in result.stderr
    assert outbox_depth(tmp_path) == 0

    # Declared in signing.domains (the peers bind b.test to this signer), it is accepted into the outbox.
    config = publish_config(tmp_path, signing="{key: k.pem, cert: c.pem, domains: [b.test]}")
    assert " for a.test, b.test, " in run("check-config", "-c", config).stdout
    result = run("publish", "-c", config, "--timeout", "0.2", foreign)
    assert "queued in the outbox" in result.stderr and "rejected" not in result.stderr
    assert outbox_depth(tmp_path) == 1


def test_publish_refuses_with_a_signing_certificate_every_peer_refuses(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    expired = self_signed_certificate(key, "CSIRT A", not_before=NOW - 60 * DAY, days=30, domains=("a.test",))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "c.pem").write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    result = run("publish", "-c", publish_config(tmp_path), SAMPLES / "01-phishing-public-v2.xml")
    assert result.returncode == 2 and "certificate-expired: certificate expired on" in result.stderr
    assert "issue a new certificate" in result.stderr
    assert outbox_depth(tmp_path) == 0


def test_keygen_writes_a_key_and_certificate_for_the_domains_and_never_replaces_them(tmp_path: Path) -> None:
    key, cert = tmp_path / "b2.key", tmp_path / "b2.crt"
    made = run("keygen", "--key", key, "--cert", cert, "--domain", "b.test", "--type", "ec")
    assert made.returncode == 0, made.stderr
    identity = load_identity(key, cert)
    assert fingerprint(identity.certificate) in made.stdout
    assert speaks_for(identity, ()) == ("b.test",)
    again = run("keygen", "--key", key, "--cert", cert, "--domain", "b.test")
    assert again.returncode != 0 and "refusing to replace a signing identity" in again.stderr
    assert load_identity(key, cert).fingerprint == identity.fingerprint
