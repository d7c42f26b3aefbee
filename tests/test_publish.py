"""Refusal at the source: what every peer's default rule would quarantine is refused at publish, with the
peers' reason. Each case is also sent to a receiver, so that both ends are seen to decide alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from tests.conftest import SAMPLES
from tests.hostile_corpus import MAX_BYTES, ec_identity, iodef2
from tests.pki import DAY, NOW, Authority, issue, make_ca
from xmppbridge.config.settings import load_config
from xmppbridge.demo.consortium import Consortium
from xmppbridge.errors import InputRejected, SignerUnusable
from xmppbridge.paths.publish import prepare, speaks_for
from xmppbridge.paths.receive import check_item
from xmppbridge.paths.relay import Relayer, Route, prepare_relay
from xmppbridge.policy.audiences import Audience
from xmppbridge.signing.keys import SigningIdentity, generate_identity_files, load_identity
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import SignerRef, TrustStore, certificate_domains

A = ec_identity("CSIRT A", domains=("a.test",))
SERVICE = "pubsub.a.test"


def publish(data: bytes, identity: SigningIdentity = A, **kwargs: object) -> list:
    return prepare(data, prefix="iodef", identity=identity, max_bytes=MAX_BYTES, **kwargs)  # type: ignore[arg-type]


def refusal(data: bytes, identity: SigningIdentity = A, **kwargs: object) -> InputRejected:
    with pytest.raises(InputRejected) as excinfo:
        publish(data, identity, **kwargs)
    return excinfo.value


def received(payload: bytes, trust: TrustStore) -> str:
    """What a receiver makes of ``payload``: "accepted" or its quarantine reason."""
    try:
        check_item(trust, service=SERVICE, node="iodef/need-to-know/mitigation", payload=payload,
                   max_bytes=MAX_BYTES)
    except InputRejected as exc:
        return exc.reason
    return "accepted"


def two_incidents(first: str, second: str) -> bytes:
    """One document, two Incidents of different purposes (published as two items)."""
    one, two = etree.fromstring(iodef2("P-1", name=first)), etree.fromstring(
        iodef2("P-2", name=second, purpose="watch"))
    one.append(two[0])
    return etree.tostring(one)


# -- IncidentID domains -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "published"), [
    ("a.test", True),
    ("csirt.a.test", True),  # below a domain of the certificate
    ("CSIRT.A.Test.", True),  # DNS names are compared without case and trailing dot
    ("csirt.b.test", False),
    ("evil-a.test", False),  # not below a.test, only ending like it
    ("a.test.evil", False),
])
def test_an_incident_id_outside_the_certificate_domains_is_refused_as_receivers_would(
        name: str, published: bool) -> None:
    document = iodef2("D-1", name=name)
    receiver = TrustStore.from_certificates([A.certificate])  # a peer's default rule: nothing but the pin
    if published:
        [item] = publish(document)
        assert received(item.xml, receiver) == "accepted"
        return
    exc = refusal(document)
    assert exc.reason == "domain-not-allowed"
    # The receiver, handed the same document signed by the same key, quarantines it for the same reason.
    assert received(sign_document(etree.fromstring(document), A), receiver) == exc.reason


def test_the_refusal_says_why_and_how_to_fix_it() -> None:
    message = str(refusal(iodef2("D-2", name="csirt.b.test")))
    assert "'csirt.b.test'" in message and "speaks for a.test" in message
    assert "signing.domains" in message and "trust.domains" in message


def test_a_certificate_without_domains_speaks_for_none() -> None:
    nobody = ec_identity("CSIRT Nobody")
    exc = refusal(iodef2("D-3"), nobody)
    assert exc.reason == "domain-not-allowed" and "speaks for no domain" in str(exc)


def test_one_foreign_incident_refuses_the_whole_document() -> None:
    """Nothing of a document is published when any part of it would be quarantined."""
    exc = refusal(two_incidents("csirt.a.test", "csirt.b.test"))
    assert exc.reason == "domain-not-allowed" and "'csirt.b.test'" in str(exc)
    assert len(publish(two_incidents("csirt.a.test", "cert.a.test"))) == 2


def test_signing_domains_speak_for_what_peers_bind_to_the_signer() -> None:
    """A coordinator publishing for b.test declares it in signing.domains; a peer that binds b.test to its
    certificate in trust.domains accepts the item, a peer that does not refuses it for the same reason."""
    document = iodef2("D-4", name="csirt.b.test")
    [item] = publish(document, domains=("b.test",))
    assert speaks_for(A, ("b.test", "a.test")) == ("a.test", "b.test")
    bound = dataclasses.replace(TrustStore.from_certificates([A.certificate]),
                                domains=((SignerRef.parse(A.fingerprint), ("b.test",)),))
    assert received(item.xml, bound) == "accepted"
    assert received(item.xml, TrustStore.from_certificates([A.certificate])) == "domain-not-allowed"
    # signing.domains add to the certificate's domains: A's own documents still publish.
    assert publish(iodef2("D-5"), domains=("b.test",))


# -- the signing certificate ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> Authority:
    return make_ca()


@pytest.mark.parametrize(("make", "reason"), [
    (lambda ca: issue(ca, "Expired", domains=("a.test",), not_before=NOW - 60 * DAY, days=30),
     "certificate-expired"),
    (lambda ca: issue(ca, "Future", domains=("a.test",), not_before=NOW + DAY), "certificate-not-yet-valid"),
    (lambda ca: issue(ca, "Encipher only", domains=("a.test",), usage="encipher"), "wrong-key-usage"),
    (lambda ca: issue(ca, "Short key", domains=("a.test",), key=rsa.generate_private_key(65537, 1024)),
     "weak-key"),
], ids=["expired", "not-yet-valid", "no-digital-signature", "rsa-1024"])
def test_a_signing_certificate_receivers_refuse_is_refused_at_publish(
        ca: Authority, make: Callable[[Authority], SigningIdentity], reason: str) -> None:
    identity = make(ca)
    document = iodef2("S-1")
    exc = refusal(document, identity)
    assert isinstance(exc, SignerUnusable) and exc.reason == reason
    assert "every peer would refuse" in str(exc)
    receiver = TrustStore(certificates={}, authorities=(ca.certificate,))
    assert received(sign_document(etree.fromstring(document), identity), receiver) == reason


def test_the_signer_is_judged_at_the_time_of_publishing() -> None:
    """The bridge loads its key once; a certificate that expires while it runs is refused from then on."""
    short = ec_identity("Short-lived", domains=("a.test",), not_before=NOW - DAY, days=2)
    assert publish(iodef2("S-2"), short)
    exc = refusal(iodef2("S-3"), short, now=NOW + 2 * DAY)
    assert exc.reason == "certificate-expired" and "signing.cert" in str(exc)


def test_the_signer_is_checked_before_the_document() -> None:
    """A broken signer is the server's fault whatever the document: AtomPub answers 503 for it, not 400."""
    expired = ec_identity("Expired", domains=("a.test",), not_before=NOW - 60 * DAY, days=30)
    assert refusal(b"<not-iodef/>", expired).reason == "certificate-expired"


def test_a_relay_is_not_signed_with_a_certificate_receivers_refuse() -> None:
    [item] = publish(iodef2("S-4"))
    expired = ec_identity("Expired relay", not_before=NOW - 60 * DAY, days=30)
    with pytest.raises(SignerUnusable) as excinfo:
        prepare_relay(item.on(SERVICE), item.xml,
                      Relayer(expired, TrustStore.from_certificates([A.certificate]), "iodef", MAX_BYTES),
                      Route(lambda _node: Audience(False, frozenset({"c"}), frozenset({"bridge.c.test"})),
                            allowed={"bridge.c.test"}))
    assert excinfo.value.reason == "certificate-expired"


# -- the demo ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("old_keys", [False, True], ids=["fresh", "keys-made-before-the-san"])
def test_the_demo_samples_publish_with_the_demo_config(tmp_path: Path, old_keys: bool) -> None:
    """What `make demo` publishes at A passes the refusal at the source, also in a workdir whose keys
    predate the subjectAltName (its certificate speaks for no domain; signing.domains does)."""
    consortium = Consortium(tmp_path, {"a": "127.0.0.2", "b": "127.0.0.3"})
    if old_keys:
        generate_identity_files("CSIRT A", tmp_path / "keys" / "a.key", tmp_path / "keys" / "a.crt")
    consortium.write_files()
    config = load_config(consortium["a"].config_path)
    assert config.signing_domains == ("a.test",)
    identity = load_identity(config.signing_key, config.signing_cert)
    assert certificate_domains(identity.certificate) == (() if old_keys else ("a.test",))
    for sample in sorted(SAMPLES.glob("*.xml")):
        assert publish(sample.read_bytes(), identity, domains=config.signing_domains), sample
    # And B, with the config the demo wrote for it, accepts what A signs.
    b_trust = load_config(consortium["b"].config_path).trust
    [item] = publish((SAMPLES / "03-malware-need-to-know-v1.xml").read_bytes(), identity,
                     domains=config.signing_domains)
    assert received(item.xml, b_trust) == "accepted"
