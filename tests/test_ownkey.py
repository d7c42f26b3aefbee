"""Our own signing key on reload: what the core decides (``policy.ownkey``), what the shell reads and logs
(``reload.reload_signing``), and that what was queued before a switch keeps its bytes."""

from __future__ import annotations

import copy
import datetime
import logging
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.hostile_corpus import ec_identity, iodef2
from tests.pki import NOW, issue, make_ca
from tests.test_members import base, load, member  # noqa: F401 - base is a fixture
from xmppbridge.config.reload import reload_signing, reloaded
from xmppbridge.paths.publish import Publisher
from xmppbridge.policy.members import Member
from xmppbridge.policy.ownkey import own_key
from xmppbridge.process.servefeed import FeedProcess
from xmppbridge.signing.keys import generate_identity_files, load_identity, self_signed_certificate
from xmppbridge.store import Store

OLD = ec_identity("CSIRT A", domains=("a.test",))
NEW = ec_identity("CSIRT A, new key", domains=("a.test",))


def entry(*, certificates: tuple = (), authorities: tuple = ()) -> Member:
    return Member("a", "bridge.a.test", "pubsub.a.test", ("a.test",), certificates, authorities)


# -- the decision ---------------------------------------------------------------------------------------


def test_a_new_key_pinned_in_our_entry_is_switched_to_with_an_audit_line() -> None:
    decision = own_key(OLD, NEW, entry(certificates=(OLD.certificate, NEW.certificate)), NOW)
    assert decision.switched and decision.identity is NEW and decision.refused is None
    assert decision.line() == (f"signing with {NEW.subject} (certificate {NEW.fingerprint}) instead of "
                               f"{OLD.subject} (certificate {OLD.fingerprint})")


def test_the_same_certificate_again_changes_nothing() -> None:
    again = load_identity_like(OLD)
    decision = own_key(OLD, again, entry(certificates=(OLD.certificate,)), NOW)
    assert not decision.switched and decision.identity is OLD and decision.line() is None
    assert decision.refused is None


def load_identity_like(identity):  # noqa: ANN001, ANN201 - a fresh object for the same key and certificate
    return type(identity).from_objects(identity.private_key, identity.certificate)


def test_files_that_could_not_be_read_keep_the_running_key() -> None:
    decision = own_key(OLD, "cannot read keys/a2.key: No such file or directory", entry(), NOW)
    assert decision.identity is OLD and not decision.switched
    assert decision.refused == "cannot read keys/a2.key: No such file or directory"


def test_an_expired_or_not_yet_valid_certificate_is_refused() -> None:
    expired = ec_identity("CSIRT A, old", not_before=NOW - datetime.timedelta(days=30), days=10)
    decision = own_key(OLD, expired, entry(certificates=(OLD.certificate, expired.certificate)), NOW)
    assert decision.identity is OLD
    assert decision.refused is not None and "expired on" in decision.refused
    assert "certificate-expired" in decision.refused
    early = ec_identity("CSIRT A, early", not_before=NOW + datetime.timedelta(days=3))
    refused = own_key(OLD, early, entry(), NOW).refused
    assert refused is not None and "certificate-not-yet-valid" in refused


def test_a_certificate_our_registry_entry_does_not_pin_is_refused() -> None:
    decision = own_key(OLD, NEW, entry(certificates=(OLD.certificate,)), NOW)
    assert decision.identity is OLD
    assert decision.refused is not None and NEW.fingerprint in decision.refused
    assert "not in our own registry entry (a: certificate, or issued by its ca)" in decision.refused


def test_without_a_registry_entry_or_pins_the_peers_trust_decides_alone() -> None:
    assert own_key(OLD, NEW, None, NOW).identity is NEW
    assert own_key(OLD, NEW, entry(), NOW).identity is NEW


def test_with_a_ca_entry_a_certificate_it_issued_is_taken_and_a_stranger_is_not() -> None:
    ca, other = make_ca("Consortium CA"), make_ca("Another CA")
    running, renewed = issue(ca, "CSIRT A"), issue(ca, "CSIRT A renewed")
    assert own_key(running, renewed, entry(authorities=(ca.certificate,)), NOW).identity is renewed
    stranger = issue(other, "CSIRT A elsewhere")
    assert own_key(running, stranger, entry(authorities=(ca.certificate,)), NOW).refused is not None
    # Through an intermediate, as the identity embeds it.
    sub = make_ca("Members CA", parent=ca)
    below = issue(sub, "CSIRT A below")
    chained = type(below)(below.private_key, below.certificate, b"", below.fingerprint, (sub.certificate,))
    assert own_key(running, chained, entry(authorities=(ca.certificate,)), NOW).identity is chained
    assert own_key(running, below, entry(authorities=(ca.certificate,)), NOW).refused is not None


# -- the shell: files read again, errors logged, paths kept --------------------------------------------


@pytest.fixture
def rotating(tmp_path: Path, base: dict) -> dict:  # noqa: F811
    """a's config pinning a.crt and a2.crt in its own entry, signing with a.key."""
    generate_identity_files("CSIRT a, new key", tmp_path / "a2.key", tmp_path / "a2.crt", domains=("a.test",))
    data = copy.deepcopy(base)
    data["members"][0]["certificate"] = ["a.crt", "a2.crt"]
    return data


def switch(tmp_path: Path, data: dict, key: str, cert: str, caplog: pytest.LogCaptureFixture):  # noqa: ANN201
    """Reload a's config with ``signing:`` pointing at ``key`` and ``cert``: (config, identity, running)."""
    running = load(tmp_path, data)
    identity = load_identity(running.signing_key, running.signing_cert)
    changed = copy.deepcopy(data)
    changed["signing"] = {"key": key, "cert": cert}
    config, restart = reloaded(running, load(tmp_path, changed))
    assert restart == []  # signing: is live now
    with caplog.at_level(logging.INFO, logger="xmppbridge.config.reload"):
        config, now_signing = reload_signing(running, config, identity)
    return config, now_signing, identity, running


def test_reload_switches_to_the_new_key_and_logs_it(
        tmp_path: Path, rotating: dict, caplog: pytest.LogCaptureFixture) -> None:
    config, identity, old, _ = switch(tmp_path, rotating, "a2.key", "a2.crt", caplog)
    assert identity is not old and identity.fingerprint == load_identity(tmp_path / "a2.key",
                                                                          tmp_path / "a2.crt").fingerprint
    assert config.signing_key == tmp_path / "a2.key" and config.signing_cert == tmp_path / "a2.crt"
    assert f"audit: signing with {identity.subject} (certificate {identity.fingerprint})" in caplog.text


@pytest.mark.parametrize("key, cert, why", [
    ("unreadable.key", "a2.crt", "cannot read"),  # a directory: unreadable also for root
    ("a.key", "a2.crt", "the private key does not belong to the certificate"),
    ("a2.key", "garbage.crt", "not a PEM certificate"),
])
def test_reload_keeps_the_running_key_when_the_new_files_are_unusable(
        tmp_path: Path, rotating: dict, caplog: pytest.LogCaptureFixture, key: str, cert: str,
        why: str) -> None:
    (tmp_path / "garbage.crt").write_text("not a certificate\n")
    (tmp_path / "unreadable.key").mkdir()
    config, identity, old, running = switch(tmp_path, rotating, key, cert, caplog)
    assert identity is old
    assert (config.signing_key, config.signing_cert) == (running.signing_key, running.signing_cert)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "reload: not switching our signing key" in record.message and why in record.message
    assert f"still signing with {old.subject} (certificate {old.fingerprint})" in record.message


def test_reload_refuses_an_expired_new_certificate(
        tmp_path: Path, rotating: dict, caplog: pytest.LogCaptureFixture) -> None:
    key = load_identity(tmp_path / "a2.key", tmp_path / "a2.crt").private_key
    expired = self_signed_certificate(key, "CSIRT a, expired", not_before=NOW - datetime.timedelta(days=9),
                                      days=2, domains=("a.test",))
    (tmp_path / "a2.crt").write_bytes(expired.public_bytes(Encoding.PEM))  # replaced in place
    config, identity, old, _ = switch(tmp_path, rotating, "a2.key", "a2.crt", caplog)
    assert identity is old and "certificate-expired" in caplog.text
    assert config.signing_cert == tmp_path / "a.crt"


def test_what_was_queued_before_a_switch_keeps_its_bytes_and_what_follows_is_signed_anew(
        tmp_path: Path, rotating: dict, caplog: pytest.LogCaptureFixture) -> None:
    _, identity, old, running = switch(tmp_path, rotating, "a2.key", "a2.crt", caplog)
    with closing(Store(tmp_path / "x.sqlite")) as store:
        publisher = Publisher.for_config(store, running)
        assert publisher.identity.fingerprint == old.fingerprint
        before = publisher.submit(iodef2("ROT-1", restriction="partner"), source="test")
        queued = {a.outbox_id: store.outbox_item(a.outbox_id).payload for a in before}
        publisher.identity = identity  # what the bridge does on the switch
        after = publisher.submit(iodef2("ROT-2", restriction="partner"), source="test")
        for outbox_id, payload in queued.items():
            item = store.outbox_item(outbox_id)
            assert item.payload == payload and item.status == "pending"
        assert {a.item.signer.fingerprint for a in before} == {old.fingerprint}
        assert {a.item.signer.fingerprint for a in after} == {identity.fingerprint}
        assert identity.cert_pem.split(b"\n")[-3] in after[0].item.xml


def test_a_feed_process_signs_its_atompub_writes_with_the_reloaded_key(
        tmp_path: Path, rotating: dict) -> None:
    running = load(tmp_path, rotating)
    process = FeedProcess(running)
    try:
        old = process.publisher.identity
        changed = copy.deepcopy(rotating)
        changed["signing"] = {"key": "a2.key", "cert": "a2.crt"}
        load(tmp_path, changed)  # the file the process reads again
        process.reload()
        assert process.publisher.identity.fingerprint != old.fingerprint
        assert process.config.signing_cert == tmp_path / "a2.crt"
    finally:
        process.store.close()
