"""Signing identities and the trust store: load once, refuse weak or mismatched keys, pin by fingerprint."""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.pki import Member, make_member
from xmppbridge.errors import ConfigError
from xmppbridge.signing.keys import (
    IdentityError,
    SigningIdentity,
    generate_identity_files,
    load_identity,
    self_signed_certificate,
)
from xmppbridge.signing.verify import TrustStore

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Member]:
    directory = tmp_path_factory.mktemp("keys")
    return {kind: make_member(directory, f"member-{kind}", kind) for kind in ("rsa", "ec")}


def _write_pair(directory: Path, key: object, certificate: x509.Certificate) -> tuple[Path, Path]:
    key_path, cert_path = directory / "k.pem", directory / "c.pem"
    key_path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _any_self_signed(key: object, *, key_usage: x509.KeyUsage | None = None) -> x509.Certificate:
    """A minimal self-signed certificate for key types ``self_signed_certificate`` would refuse."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "odd")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind, signature_method_suffix", [("rsa", "rsa-sha256"), ("ec", "ecdsa-sha256")])
def test_load_identity(members: dict[str, Member], kind: str, signature_method_suffix: str) -> None:
    member = members[kind]
    identity = load_identity(member.key_path, member.cert_path)
    assert identity.fingerprint == member.identity.certificate.fingerprint(hashes.SHA256()).hex()
    assert len(identity.fingerprint) == 64
    assert identity.cert_pem == member.cert_path.read_bytes()
    assert identity.subject == f"CN=member-{kind}"
    assert identity.signature_method.endswith(signature_method_suffix)
    expected_type = rsa.RSAPrivateKey if kind == "rsa" else ec.EllipticCurvePrivateKey
    assert isinstance(identity.private_key, expected_type)


def test_generated_files(members: dict[str, Member]) -> None:
    member = members["ec"]
    assert stat.S_IMODE(os.stat(member.key_path).st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(member.cert_path.read_bytes())
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert certificate.subject == certificate.issuer
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=365)


def test_generate_refuses_to_replace_an_identity(members: dict[str, Member]) -> None:
    member = members["ec"]
    before = member.key_path.read_bytes()
    with pytest.raises(IdentityError, match="already exists"):
        generate_identity_files("again", member.key_path, member.cert_path.with_name("new.pem"), kind="ec")
    assert member.key_path.read_bytes() == before


def test_refuses_key_not_matching_certificate(members: dict[str, Member]) -> None:
    with pytest.raises(IdentityError, match="does not belong to the certificate"):
        load_identity(members["rsa"].key_path, members["ec"].cert_path)


@pytest.mark.parametrize(
    "make_key, message",
    [
        (lambda: rsa.generate_private_key(65537, 1024), "1024 bits is too short"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "curve secp256k1 is not allowed"),
        (ed25519.Ed25519PrivateKey.generate, "Ed25519PrivateKey keys are not supported"),
    ],
    ids=["rsa-1024", "secp256k1", "ed25519"],
)
def test_refuses_weak_or_unsupported_keys(
    tmp_path: Path, make_key: Callable[[], object], message: str
) -> None:
    key = make_key()
    key_path, cert_path = _write_pair(tmp_path, key, _any_self_signed(key))
    with pytest.raises(IdentityError, match=message):
        load_identity(key_path, cert_path)


def test_refuses_expired_and_future_certificates(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    expired = self_signed_certificate(key, "old", days=30, not_before=NOW - datetime.timedelta(days=60))
    key_path, cert_path = _write_pair(tmp_path, key, expired)
    with pytest.raises(IdentityError, match="certificate expired on"):
        load_identity(key_path, cert_path)
    # The same files load when judged at a time inside the validity period.
    assert load_identity(key_path, cert_path, now=NOW - datetime.timedelta(days=45))

    future = self_signed_certificate(key, "new", days=30, not_before=NOW + datetime.timedelta(days=2))
    key_path, cert_path = _write_pair(tmp_path, key, future)
    with pytest.raises(IdentityError, match="not valid before"):
        load_identity(key_path, cert_path)


def test_refuses_certificate_without_digital_signature_usage(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    # keyEncipherment only
    usage = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    key_path, cert_path = _write_pair(tmp_path, key, _any_self_signed(key, key_usage=usage))
    with pytest.raises(IdentityError, match="digitalSignature"):
        load_identity(key_path, cert_path)


def test_unreadable_inputs(tmp_path: Path, members: dict[str, Member]) -> None:
    with pytest.raises(IdentityError, match="cannot read"):
        load_identity(tmp_path / "missing.key", members["ec"].cert_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(IdentityError, match="not a usable PEM private key"):
        load_identity(garbage, members["ec"].cert_path)
    with pytest.raises(IdentityError, match="not a PEM certificate"):
        load_identity(members["ec"].key_path, garbage)


def test_from_objects_checks_the_pair(members: dict[str, Member]) -> None:
    with pytest.raises(IdentityError, match="does not belong"):
        SigningIdentity.from_objects(members["rsa"].identity.private_key, members["ec"].identity.certificate)


# --- trust store ---------------------------------------------------------------------------------------


def test_trust_store_from_files_directories_and_bundles(tmp_path: Path, members: dict[str, Member]) -> None:
    rsa_pem, ec_pem = members["rsa"].cert_path.read_bytes(), members["ec"].cert_path.read_bytes()
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    (anchors / "bundle.crt").write_bytes(rsa_pem + b"\n" + ec_pem)  # several certificates in one file
    (anchors / "notes.txt").write_text("ignored: not *.pem or *.crt")
    single = tmp_path / "single.pem"
    single.write_bytes(ec_pem)

    store = TrustStore.from_paths([anchors])
    assert len(store) == 2
    for member in members.values():
        assert store.get(member.identity.fingerprint) == member.identity.certificate
        assert store.get(member.identity.fingerprint.upper()) is not None
    assert len(TrustStore.from_paths([single, anchors])) == 2  # duplicates collapse by fingerprint
    assert len(TrustStore.from_paths(single)) == 1  # a single path is accepted too
    assert len(TrustStore.from_paths([tmp_path / "anchors"])) == 2


def test_trust_store_errors_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        TrustStore.from_paths([tmp_path / "nope.pem"])
    assert missing.value.key == "trust.anchors" and "no such file" in str(missing.value)

    not_pem = tmp_path / "broken.pem"
    not_pem.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"broken\.pem: trust\.anchors: no usable PEM certificate"):
        TrustStore.from_paths([not_pem])

    weak_key = rsa.generate_private_key(65537, 1024)
    weak = tmp_path / "weak.pem"
    weak.write_bytes(_any_self_signed(weak_key).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="too short"):
        TrustStore.from_paths([weak])
