"""The quarantine: refused items kept with source, time, reason and bytes; released once the reason is
fixed (through the same receive path), purged by id or age; existing stores migrated."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from lxml import etree

from tests.hostile_corpus import MAX_BYTES, NODE, SERVICE, ec_identity, iodef2
from xmppbridge.cli import main
from xmppbridge.ops.quarantine import held, parse_age, release
from xmppbridge.paths.receive import receive_item
from xmppbridge.signing.keys import SigningIdentity, generate_identity_files
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import TrustStore
from xmppbridge.store import Store
from xmppbridge.store.db import _SCHEMA
from xmppbridge.store.items import ItemRef, Refused

A = ec_identity("CSIRT A", domains=("a.test",))
B = ec_identity("CSIRT B", domains=("b.test",))

FOLLOWS = {SERVICE}.__contains__  # Config.sources.follows of a bridge subscribed to SERVICE only


def trusting(*identities: SigningIdentity) -> TrustStore:
    return TrustStore.from_certificates(i.certificate for i in identities)


def by(identity: SigningIdentity, incident_id: str, *, name: str = "csirt.b.test", **kwargs: str) -> bytes:
    return sign_document(etree.fromstring(iodef2(incident_id, name=name, **kwargs)), identity)


@pytest.fixture
def store(store_target: str) -> Iterator[Store]:
    with Store(store_target) as store:
        yield store


def receive(store: Store, trust: TrustStore, payload: bytes, item_id: str = "item-1") -> str:
    return receive_item(store, trust, ItemRef(SERVICE, NODE, item_id), payload, max_bytes=MAX_BYTES).status


def test_release_after_adding_a_trust_anchor(store: Store) -> None:
    payload = by(B, "B-1")
    assert receive(store, trusting(A), payload) == "unknown-signer"
    [record] = held(store)

    [still] = release(store, trusting(A), [record], max_bytes=MAX_BYTES, follows=FOLLOWS)
    assert not still.released and still.outcome.startswith("unknown-signer")
    assert store.count_rejects(held_only=True) == 1 and store.count_entries() == 0

    [done] = release(store, trusting(A, B), held(store), max_bytes=MAX_BYTES, follows=FOLLOWS)
    assert done.released and done.outcome == "mirrored: new"
    [entry] = store.entries()
    assert entry.xml == payload and entry.signer_fingerprint == B.fingerprint and entry.item_id == "item-1"
    assert held(store) == []
    [kept] = store.rejects()  # the record stays, released, until purged
    assert not kept.held and kept.resolution == "mirrored: new" and kept.raw == payload
    [again] = release(store, trusting(A, B), [kept], max_bytes=MAX_BYTES, follows=FOLLOWS)
    assert not again.released and "already released" in again.outcome


def test_a_record_kept_under_another_spelling_of_the_service_is_mirrored_under_the_usual_one(
        store: Store) -> None:
    # Earlier versions kept catch-up refusals under the configuration's spelling of the service.
    store.add_reject(
        Refused("xmpp", "unknown-signer", "", by(B, "B-9"), ItemRef(SERVICE.upper(), NODE, "item-1")),
    )
    [done] = release(store, trusting(A, B), held(store), max_bytes=MAX_BYTES,
                     follows=lambda service: service.lower() == SERVICE)
    assert done.released
    [entry] = store.entries()
    assert entry.service == SERVICE  # where the notifications of that peer are stored


def test_a_release_that_fails_again_keeps_the_item_with_the_new_reason(store: Store) -> None:
    receive(store, trusting(A), by(B, "B-2", name="csirt.a.test"))  # B speaking for A's domain
    [result] = release(store, trusting(A, B), held(store), max_bytes=MAX_BYTES, follows=FOLLOWS)
    assert not result.released
    [record] = held(store)
    assert record.reason == "domain-not-allowed" and "csirt.a.test" in record.message


def test_a_release_never_rolls_back_a_later_version(store: Store) -> None:
    receive(store, trusting(A), by(B, "B-3", description="first"))
    assert receive(store, trusting(A, B), by(B, "B-3", description="second")) == "new"
    [result] = release(store, trusting(A, B), held(store), max_bytes=MAX_BYTES, follows=FOLLOWS)
    assert result.released and result.outcome.startswith("superseded")
    [entry] = store.entries()
    assert b"second" in entry.xml


def test_records_that_are_not_pubsub_items_stay_held(store: Store) -> None:
    store.add_reject(Refused("cli:x.xml", "malformed-xml", "nope", b"<x"))
    [result] = release(store, trusting(A), held(store), max_bytes=MAX_BYTES, follows=FOLLOWS)
    assert not result.released and "not an item of a pubsub node" in result.outcome


def test_duplicates_are_counted_and_raw_bytes_are_bounded(store: Store) -> None:
    payload = by(B, "B-4")  # ECDSA signatures differ each time: sign once
    for _ in range(3):
        receive(store, trusting(A), payload)
    [record] = store.rejects()
    assert record.seen_count == 3 and record.last_seen_at >= record.received_at
    big = b"<x>" + b"A" * (2 << 20)
    store.add_reject(Refused("http", "too-large", "m", big))
    [huge, _] = store.rejects()
    assert huge.raw_size == len(big) and len(huge.raw) == 1 << 20


def test_purge_by_id_age_and_state(store: Store) -> None:
    for n in range(3):
        receive(store, trusting(A), by(B, f"B-P{n}"), item_id=f"p{n}")
    first, second, third = sorted(r.id for r in store.rejects())
    assert store.purge_rejects(ids=[first]) == 1
    assert store.purge_rejects(before=datetime.now(UTC) - timedelta(days=1)) == 0
    release(store, trusting(A, B), [store.reject(second)], max_bytes=MAX_BYTES, follows=FOLLOWS)
    assert store.purge_rejects(released_only=True) == 1
    assert store.purge_rejects(before=datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert store.count_rejects() == 0
    with pytest.raises(ValueError, match="refusing to empty"):
        store.purge_rejects()


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("1w2d", timedelta(days=9)),
    ("90s", timedelta(seconds=90)), ("5m", timedelta(minutes=5)),
])
def test_ages(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "3 days", "-1d"])
def test_bad_ages(text: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


def test_a_store_from_before_the_quarantine_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.execute("INSERT INTO rejects (source, service, node, item_id, reason, message, raw, received_at)"
                 " VALUES ('xmpp', ?, ?, 'old', 'unknown-signer', 'm', ?, '2024-01-01T00:00:00.000000Z')",
                 (SERVICE, NODE, b"<old/>"))
    conn.commit()
    conn.close()
    with Store(path) as store:
        [record] = store.rejects()
        assert record.held and record.raw == b"<old/>" and record.raw_size == 6 and record.seen_count == 1
        store.add_reject(Refused("xmpp", "unknown-signer", "m", b"<old/>", ItemRef(SERVICE, NODE, "old")))
        assert store.count_rejects() == 1 and store.rejects()[0].seen_count == 2


# --- the commands ------------------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    generate_identity_files("us", tmp_path / "k.pem", tmp_path / "c.pem", kind="ec")
    (tmp_path / "trust").mkdir()
    (tmp_path / "trust" / "a.pem").write_bytes(A.certificate.public_bytes(serialization.Encoding.PEM))
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({
        "component": {"jid": "bridge.z.test", "secret": "s"}, "pubsub": {"service": "pubsub.z.test"},
        "signing": {"key": "k.pem", "cert": "c.pem"}, "trust": {"anchors": ["trust"]},
        "subscriptions": [{"service": SERVICE, "nodes": "all"}], "store": {"path": "z.sqlite"},
    }))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def ids_listed(out: str) -> list[int]:
    return [int(line.split()[0]) for line in out.splitlines()]


def test_the_quarantine_commands(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = by(B, "B-CLI")
    with Store(config.parent / "z.sqlite") as store:
        receive(store, trusting(A), payload, item_id="cli-item")
        receive(store, trusting(A), iodef2("UNSIGNED"), item_id="unsigned")
        unsigned_id, b_id = sorted(r.id for r in store.rejects())[::-1]

    code, out = run(capsys, "quarantine", "list", "-c", config)
    assert code == 0 and ids_listed(out) == [unsigned_id, b_id]
    assert "item cli-item: unknown-signer: document signed by unknown" in out
    assert run(capsys, "rejects", "-c", config, "--reason", "signature-missing")[1].count("\n") == 1

    code, out = run(capsys, "quarantine", "show", "-c", config, str(b_id))
    assert code == 0 and "reason:    unknown-signer" in out and f"service:   {SERVICE}" in out
    assert "B-CLI" in out
    main(["quarantine", "show", "-c", str(config), "--raw", str(b_id)])
    assert capsys.readouterr().out.encode() == payload
    assert run(capsys, "quarantine", "show", "-c", config, "999")[0] == 1

    code, out = run(capsys, "quarantine", "release", "-c", config, str(b_id))
    assert code == 1 and "still held: unknown-signer" in out
    # The operator obtains B's certificate out of band and pins it: release now mirrors the item.
    (config.parent / "trust" / "b.pem").write_bytes(B.certificate.public_bytes(serialization.Encoding.PEM))
    code, out = run(capsys, "quarantine", "release", "-c", config, "--reason", "unknown-signer")
    assert code == 0 and "item cli-item: released: mirrored: new" in out
    with Store(config.parent / "z.sqlite") as store:
        assert [e.item_id for e in store.entries()] == ["cli-item"]

    assert ids_listed(run(capsys, "quarantine", "list", "-c", config)[1]) == [unsigned_id]
    assert "[released: mirrored: new]" in run(capsys, "quarantine", "list", "-c", config, "--all")[1]
    assert run(capsys, "quarantine", "release", "-c", config)[0] == 2  # says what to release
    assert run(capsys, "quarantine", "purge", "-c", config)[0] == 2  # and what to purge
    assert run(capsys, "quarantine", "purge", "-c", config, "--older-than", "soon")[0] == 2
    assert run(capsys, "quarantine", "purge", "-c", config, "--released")[1] == (
        "purged 1 item(s) from the quarantine\n")
    assert run(capsys, "quarantine", "purge", "-c", config, str(unsigned_id))[1].startswith("purged 1 ")


def test_an_item_from_a_service_not_subscribed_to_is_released_only_once_it_is(store: Store) -> None:
    store.add_reject(
        Refused(
            "xmpp",
            "unknown-source",
            "not one of the subscriptions",
            by(B, "B-9"),
            ItemRef("mallory.example", NODE, "item-1"),
        ),
    )
    [still] = release(store, trusting(A, B), held(store), max_bytes=MAX_BYTES, follows=FOLLOWS)
    assert not still.released and still.outcome.startswith("unknown-source")
    [done] = release(store, trusting(A, B), held(store), max_bytes=MAX_BYTES,
                     follows={SERVICE, "mallory.example"}.__contains__)
    assert done.released and store.find_entry("mallory.example", NODE, "item-1") is not None
