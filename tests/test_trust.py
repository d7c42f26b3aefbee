"""The trust store: a consortium CA with chain validation, CRLs and key usage; pinned certificates with a
rotation overlap; which signer may speak for which IncidentID domain, per subscription."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from tests.pki import DAY, NOW, Authority, issue, make_ca, make_crl, pem
from xmppbridge.cli import main
from xmppbridge.errors import InputRejected, UnknownSigner
from xmppbridge.policy.sources import authorize_source
from xmppbridge.signing.keys import (
    SigningIdentity,
    generate_identity_files,
    load_identity,
    self_signed_certificate,
)
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import SignerRef, SourceRule, TrustStore, domain_allowed
from xmppbridge.signing.verify import Verified, verify_document

DATA = Path(__file__).resolve().parent / "data" / "iodef"
MINIMAL_V2 = etree.parse(str(DATA / "iodef2-minimal.xml")).getroot()  # IncidentID csirt.example.org


@pytest.fixture(scope="module")
def root_ca() -> Authority:
    return make_ca()


@pytest.fixture(scope="module")
def member(root_ca: Authority) -> SigningIdentity:
    return issue(root_ca, "CSIRT Example", domains=("example.org",))


def ca_store(*authorities: Authority, crls: tuple = ()) -> TrustStore:
    return TrustStore(certificates={}, authorities=tuple(a.certificate for a in authorities), crls=crls)


def signed_by(identity: SigningIdentity) -> bytes:
    return sign_document(MINIMAL_V2, identity)


def reason(data: bytes, trust: TrustStore, **kwargs: object) -> str:
    with pytest.raises(InputRejected) as excinfo:
        verify_document(data, trust, **kwargs)  # type: ignore[arg-type]
    return excinfo.value.reason


# --- consortium CA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_certificate_issued_by_the_consortium_ca_is_trusted(root_ca: Authority, kind: str) -> None:
    identity = issue(root_ca, f"CSIRT {kind}", kind=kind, domains=("example.org",))
    verified = verify_document(signed_by(identity), ca_store(root_ca))
    assert verified.originator.via == "ca"
    assert verified.originator.chain == (identity.certificate, root_ca.certificate)
    assert verified.signer_fingerprint == identity.fingerprint and verified.relays == ()


def test_intermediates_travel_in_the_signature(root_ca: Authority) -> None:
    intermediate = make_ca("Consortium Issuing CA", parent=root_ca)
    identity = issue(intermediate, "CSIRT Via Intermediate")
    with_chain = dataclasses.replace(identity, intermediates=(intermediate.certificate,))
    verified = verify_document(signed_by(with_chain), ca_store(root_ca))
    assert verified.originator.chain == (identity.certificate, intermediate.certificate, root_ca.certificate)
    # Without the intermediate there is no path to the root.
    assert reason(signed_by(identity), ca_store(root_ca)) == "unknown-signer"


def test_other_cas_and_self_signed_strangers_are_unknown(root_ca: Authority, member: SigningIdentity) -> None:
    with pytest.raises(UnknownSigner, match=r"unknown signer CN=CSIRT Example.*issuer CN=Consortium Root CA"):
        verify_document(signed_by(member), ca_store(make_ca("Some Other CA")))
    stranger = issue(make_ca("Mallory CA"), "CSIRT Example")  # same subject, wrong issuer
    assert reason(signed_by(stranger), ca_store(root_ca)) == "unknown-signer"


@pytest.mark.parametrize(("start", "days", "expected"), [
    (NOW - 60 * DAY, 30, "certificate-expired"),
    (NOW + DAY, 30, "certificate-not-yet-valid"),
])
def test_validity_period_of_the_member_certificate(root_ca: Authority, start: datetime.datetime, days: int,
                                                   expected: str) -> None:
    identity = issue(root_ca, "CSIRT Dated", not_before=start, days=days)
    assert reason(signed_by(identity), ca_store(root_ca)) == expected
    # Judged at a moment inside the validity period, the same bytes verify.
    assert verify_document(signed_by(identity), ca_store(root_ca), now=start + DAY)


def test_an_expired_intermediate_breaks_the_chain(root_ca: Authority) -> None:
    intermediate = make_ca("Old Issuing CA", parent=root_ca, not_before=NOW - 400 * DAY, days=300)
    identity = issue(intermediate, "CSIRT Late", not_before=NOW - 2 * DAY)
    signed = signed_by(dataclasses.replace(identity, intermediates=(intermediate.certificate,)))
    with pytest.raises(InputRejected, match="Old Issuing CA") as excinfo:
        verify_document(signed, ca_store(root_ca))
    assert excinfo.value.reason == "certificate-expired"


def test_key_usage_must_allow_signatures(root_ca: Authority) -> None:
    assert reason(signed_by(issue(root_ca, "CSIRT Encipher", usage="encipher")), ca_store(root_ca)) == (
        "wrong-key-usage")
    # No KeyUsage extension at all means no restriction (RFC 5280 §4.2.1.3).
    assert verify_document(signed_by(issue(root_ca, "CSIRT Any Usage", usage=None)), ca_store(root_ca))


def test_sha1_certificates_and_short_keys_are_refused(root_ca: Authority) -> None:
    sha1 = issue(root_ca, "CSIRT SHA-1", sha1=True)
    assert sha1.certificate.signature_hash_algorithm.name == "sha1"
    assert reason(signed_by(sha1), ca_store(root_ca)) == "weak-algorithm"
    short = issue(root_ca, "CSIRT Short Key", key=rsa.generate_private_key(65537, 1024))
    assert reason(signed_by(short), ca_store(root_ca)) == "weak-key"


def test_a_signature_with_two_end_entity_certificates_is_ambiguous(root_ca: Authority,
                                                                   member: SigningIdentity) -> None:
    other = issue(root_ca, "CSIRT Other")
    confusing = dataclasses.replace(member, intermediates=(other.certificate,))
    assert reason(signed_by(confusing), ca_store(root_ca)) == "bad-certificate"


# --- revocation --------------------------------------------------------------------------------------------


def test_a_revoked_certificate_is_refused(root_ca: Authority, member: SigningIdentity) -> None:
    revoked = issue(root_ca, "CSIRT Revoked")
    crl = make_crl(root_ca, [revoked.certificate])
    with pytest.raises(InputRejected, match="was revoked by") as excinfo:
        verify_document(signed_by(revoked), ca_store(root_ca, crls=(crl,)))
    assert excinfo.value.reason == "certificate-revoked"
    assert verify_document(signed_by(member), ca_store(root_ca, crls=(crl,)))  # others are fine


def test_a_revoked_intermediate_revokes_what_it_issued(root_ca: Authority) -> None:
    intermediate = make_ca("Compromised Issuing CA", parent=root_ca)
    identity = issue(intermediate, "CSIRT Below")
    signed = signed_by(dataclasses.replace(identity, intermediates=(intermediate.certificate,)))
    crl = make_crl(root_ca, [intermediate.certificate])
    assert reason(signed, ca_store(root_ca, crls=(crl,))) == "certificate-revoked"


def test_stale_or_forged_crls_fail_closed(root_ca: Authority, member: SigningIdentity) -> None:
    stale = make_crl(root_ca, [], last_update=NOW - 10 * DAY, days=7)
    with pytest.raises(InputRejected, match="due for renewal") as excinfo:
        verify_document(signed_by(member), ca_store(root_ca, crls=(stale,)))
    assert excinfo.value.reason == "revocation-unknown"
    impostor = Authority(make_ca().key, root_ca.certificate)  # same issuer name, another key
    forged = make_crl(impostor, [])
    assert reason(signed_by(member), ca_store(root_ca, crls=(forged,))) == "revocation-unknown"


# --- pinned certificates and rotation ----------------------------------------------------------------------


def _pinned(identity: SigningIdentity, until: datetime.datetime | None = None) -> TrustStore:
    retire = {identity.fingerprint: until} if until else {}
    return TrustStore(certificates={identity.fingerprint: identity.certificate}, retire_at=retire)


def test_rotation_accepts_old_and_new_until_the_overlap_ends(member: SigningIdentity) -> None:
    old = SigningIdentity.from_objects(member.private_key, self_signed_certificate(member.private_key, "old"))
    new = SigningIdentity.from_objects(member.private_key, self_signed_certificate(member.private_key, "new"))
    overlap_end = NOW + 30 * DAY
    trust = TrustStore(certificates={old.fingerprint: old.certificate, new.fingerprint: new.certificate},
                       retire_at={old.fingerprint: overlap_end})
    assert verify_document(signed_by(old), trust).signer_subject == "CN=old"
    assert verify_document(signed_by(new), trust).signer_subject == "CN=new"
    with pytest.raises(InputRejected, match="retired on") as excinfo:
        verify_document(signed_by(old), trust, now=overlap_end + DAY)
    assert excinfo.value.reason == "signer-retired"
    assert verify_document(signed_by(new), trust, now=overlap_end + DAY)


def test_a_pinned_certificate_wins_over_the_ca(root_ca: Authority, member: SigningIdentity) -> None:
    trust = dataclasses.replace(_pinned(member), authorities=(root_ca.certificate,))
    assert verify_document(signed_by(member), trust).originator.via == "pinned"


# --- who may say what ---------------------------------------------------------------------------------------


def _verified(identity: SigningIdentity, trust: TrustStore) -> Verified:
    return verify_document(signed_by(identity), trust)


def test_domains_come_from_the_certificate_and_the_config(root_ca: Authority) -> None:
    identity = issue(root_ca, "CSIRT B", domains=("b.test", "*.csirt-b.example"))
    trust = dataclasses.replace(ca_store(root_ca), domains=(
        (SignerRef.parse(identity.fingerprint), ("b-partner.example",)),
        (SignerRef.parse("CN=CSIRT B, O=Test Consortium"), ("b-subject.example",)),
        (SignerRef.parse("CN=Somebody Else"), ("elsewhere.example",)),
    ))
    assert trust.bound_domains(identity.certificate) == (
        "b.test", "*.csirt-b.example", "b-partner.example", "b-subject.example")


@pytest.mark.parametrize(("name", "domains", "allowed"), [
    ("csirt.b.test", ("b.test",), True),
    ("B.TEST.", ("b.test",), True),
    ("x.csirt-b.example", ("*.csirt-b.example",), True),
    ("evilb.test", ("b.test",), False),
    ("b.test.evil", ("b.test",), False),
    ("anything.example", ("*",), True),
    ("csirt.b.test", (), False),
])
def test_domain_matching(name: str, domains: tuple[str, ...], allowed: bool) -> None:
    assert domain_allowed(name, domains) is allowed


def test_a_member_speaks_only_for_its_own_domains(root_ca: Authority) -> None:
    b = issue(root_ca, "CSIRT B", domains=("b.test",))
    trust = ca_store(root_ca)
    verified = _verified(b, trust)
    authorize_source(trust, verified.originator, verified.presenter, ["csirt.b.test"], "pubsub.b.test")
    with pytest.raises(InputRejected, match="not a domain of signer") as excinfo:
        authorize_source(trust, verified.originator, verified.presenter, ["csirt.b.test", "csirt.a.test"],
                        "pubsub.b.test")
    assert excinfo.value.reason == "domain-not-allowed"
    # A subscription may accept more from its service (e.g. a national CERT forwarding for others).
    allowing = dataclasses.replace(trust, sources={"pubsub.b.test": SourceRule(allow_domains=("a.test",))})
    authorize_source(allowing, verified.originator, verified.presenter, ["csirt.a.test"], "pubsub.b.test")
    with pytest.raises(InputRejected):
        authorize_source(allowing, verified.originator, verified.presenter, ["csirt.a.test"], "pubsub.c.test")
    anything = dataclasses.replace(trust, sources={"pubsub.b.test": SourceRule(allow_domains=("*",))})
    authorize_source(anything, verified.originator, verified.presenter, ["whatever.example"], "pubsub.b.test")


def test_a_subscription_may_name_its_signers(root_ca: Authority) -> None:
    b = issue(root_ca, "CSIRT B", domains=("b.test",))
    c = issue(root_ca, "CSIRT C", domains=("c.test",))
    trust = dataclasses.replace(ca_store(root_ca), sources={
        "pubsub.b.test": SourceRule(signers=(SignerRef.parse("CN=CSIRT B,O=Test Consortium"),)),
        "pubsub.x.test": SourceRule(signers=(SignerRef.parse("sha256:" + c.fingerprint.upper()),)),
    })
    for identity, source, ok in ((b, "pubsub.b.test", True), (c, "pubsub.b.test", False),
                                 (c, "pubsub.x.test", True), (b, "pubsub.x.test", False),
                                 (c, "pubsub.unlisted.test", True)):
        verified = _verified(identity, trust)
        domain = "b.test" if identity is b else "c.test"
        if ok:
            authorize_source(trust, verified.originator, verified.presenter, [domain], source)
        else:
            with pytest.raises(InputRejected) as excinfo:
                authorize_source(trust, verified.originator, verified.presenter, [domain], source)
            assert excinfo.value.reason == "signer-not-allowed"


@pytest.mark.parametrize("text", ["", "hello", "CN", "12ab"])
def test_signer_refs_must_be_fingerprints_or_subjects(text: str) -> None:
    with pytest.raises(ValueError, match="neither a SHA-256 fingerprint"):
        SignerRef.parse(text)


# --- files and commands -------------------------------------------------------------------------------------


def test_a_member_with_a_chain_file_signs_with_its_intermediates(tmp_path: Path, root_ca: Authority) -> None:
    intermediate = make_ca("Consortium Issuing CA", parent=root_ca)
    member = issue(intermediate, "CSIRT Chain", domains=("example.org",))
    key, chain = tmp_path / "m.key", tmp_path / "m-chain.pem"
    key.write_bytes(member.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    chain.write_bytes(pem(member.certificate, intermediate.certificate))  # leaf first, as usual
    identity = load_identity(key, chain)
    assert identity.intermediates == (intermediate.certificate,)
    verified = verify_document(signed_by(identity), ca_store(root_ca))
    assert len(verified.originator.chain) == 3


def test_generated_identities_name_their_domains(tmp_path: Path) -> None:
    identity = generate_identity_files("CSIRT D", tmp_path / "d.key", tmp_path / "d.crt", kind="ec",
                                       domains=("d.test",))
    assert TrustStore.from_certificates([]).bound_domains(identity.certificate) == ("d.test",)


def test_verify_command_with_a_ca_and_a_relay(tmp_path: Path, root_ca: Authority, member: SigningIdentity,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ca.pem").write_bytes(pem(root_ca.certificate))
    (tmp_path / "crl.pem").write_bytes(pem(make_crl(root_ca, [])))
    relay = issue(root_ca, "CSIRT Relay")
    (tmp_path / "doc.xml").write_bytes(relay_sign(signed_by(member), relay))
    code = main(["verify", "--ca", str(tmp_path / "ca.pem"), "--crl", str(tmp_path / "crl.pem"),
                 str(tmp_path / "doc.xml")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "valid signature by CN=CSIRT Example,O=Test Consortium" in out
    assert "relayed by CN=CSIRT Relay,O=Test Consortium" in out
    assert main(["verify", str(tmp_path / "doc.xml")]) == 2  # trusts nobody: says what to give
