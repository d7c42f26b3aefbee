"""The hostile corpus through real Prosody servers: A's bridge publishes whatever its outbox holds, so that
is where the cases are injected; B must quarantine each with its reason and keep serving, in bounded
memory. Cases XMPP cannot carry (DOCTYPEs, malformed bytes) and cases that need more trust configuration
at B than A's pinned certificate run in-process only (``test_hostile.py``)."""

from __future__ import annotations

import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from lxml import etree

from tests.hostile_corpus import NODE, SERVICE, build_corpus, build_world, ec_identity, iodef2
from tests.integration import eventually
from xmppbridge.demo.consortium import Consortium
from xmppbridge.paths.publish import prepare
from xmppbridge.signing.keys import load_identity
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.sign import sign_document
from xmppbridge.store import Store
from xmppbridge.store.items import SignedItem

pytestmark = pytest.mark.integration


def store_of(federation: Consortium, name: str) -> Store:
    return Store(federation[name].workdir / "data" / f"{name}.sqlite")


def rss_kb(federation: Consortium, name: str) -> int:
    bridge = federation[name].bridge
    assert bridge is not None
    status = Path(f"/proc/{bridge.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def inject(federation: Consortium, items: dict[str, bytes]) -> None:
    """Put raw payloads into A's outbox under the need-to-know/mitigation node."""
    a = federation["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    [good] = prepare(iodef2("H-TEMPLATE"), prefix="iodef", identity=identity, max_bytes=400_000)
    with closing(store_of(federation, "a")) as store:
        for item_id, payload in items.items():
            store.enqueue(SignedItem(good.node, item_id, payload, good.incident, "2.0"), source="test")


def quarantined_at_b(federation: Consortium, item_ids: set[str]) -> dict[str, object]:
    with closing(store_of(federation, "b")) as store:
        found = {r.item_id: r for r in store.rejects(limit=100_000) if r.item_id in item_ids}
    return found if found.keys() == item_ids else {}


def sender_refused(federation: Consortium, item_ids: set[str]) -> dict[str, str]:
    """Outbox items of A that its drain refused, with the reason, once A has looked at all of them."""

    def rows() -> list:
        with closing(store_of(federation, "a")) as store:
            found = store.conn.execute("SELECT item_id, status, reason FROM outbox").fetchall()
        return [row for row in found if row["item_id"] in item_ids]

    def settled() -> bool:
        mine = rows()
        return len(mine) == len(item_ids) and all(row["status"] != "pending" for row in mine)

    eventually(settled, timeout=120, what="A's outbox to settle")
    return {row["item_id"]: row["reason"] for row in rows() if row["status"] == "failed"}


def test_the_corpus_over_xmpp_is_quarantined_and_b_keeps_serving(federation: Consortium,
                                                                  tmp_path: Path) -> None:
    a = federation["a"]
    world = build_world(load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt"))
    cases = {f"hostile-{c.name}": c for c in build_corpus(world)
             if c.over_xmpp and c.pinned_only and (c.service, c.node) == (SERVICE, NODE)}
    assert len(cases) >= 30
    rss_before = rss_kb(federation, "b")

    inject(federation, {item_id: case.wire for item_id, case in cases.items()})
    # What our own parser refuses, our own outbox drain refuses too, before it reaches the wire: a
    # bridge never sends what it would itself reject. Those cases are checked at A; a hostile peer that
    # sends them anyway is covered by the in-process corpus tests of receive_item.
    refused_at_a = sender_refused(federation, set(cases))
    assert {cases[i].reason for i in refused_at_a} <= {"too-deep", "too-large"}
    for item_id, reason in refused_at_a.items():
        assert reason.startswith(cases[item_id].reason), (item_id, reason)
    cases = {item_id: case for item_id, case in cases.items() if item_id not in refused_at_a}
    assert len(cases) >= 28
    found = eventually(lambda: quarantined_at_b(federation, set(cases)), timeout=120,
                       what=f"{len(cases)} hostile items quarantined at B")
    wrong = {item_id: (case.reason, found[item_id].reason) for item_id, case in cases.items()
             if found[item_id].reason != case.reason}
    assert not wrong, wrong
    for item_id, case in cases.items():
        assert found[item_id].raw == case.wire and found[item_id].service == "pubsub.a.test"
    with closing(store_of(federation, "b")) as store:
        assert not [e for e in store.entries(limit=100_000) if e.item_id in cases]

    # Still running, still serving, still mirroring, and no memory blow-up from any of it.
    assert federation["b"].bridge.poll() is None
    assert federation.health("b").get("ready")
    assert rss_kb(federation, "b") - rss_before < 60_000
    document = tmp_path / "after.xml"
    document.write_bytes(iodef2("H-AFTER-CORPUS"))
    assert federation.publish("a", document).returncode == 0

    def mirrored() -> bool:
        with closing(store_of(federation, "b")) as store:
            return any(e.incident.id == "H-AFTER-CORPUS" for e in store.entries(limit=100_000))

    eventually(mirrored, what="a good item mirrored at B after the corpus")


def test_release_after_adding_a_trust_anchor_over_xmpp(federation: Consortium) -> None:
    # A's new key, before B has pinned it: the item waits in quarantine until B's registry entry for A
    # lists the new certificate too (a key rotation, README "Trust").
    b = federation["b"]
    renewed = ec_identity("CSIRT A renewed", domains=("a.test",))
    payload = sign_document(etree.fromstring(iodef2("H-RENEWED", name="csirt.a.test")), renewed)
    inject(federation, {"renewed": payload})
    found = eventually(lambda: quarantined_at_b(federation, {"renewed"}), what="the item quarantined at B")
    record = found["renewed"]
    assert record.reason == "unknown-signer"

    anchor = b.workdir / "keys" / "a-renewed.crt"
    anchor.write_bytes(renewed.certificate.public_bytes(serialization.Encoding.PEM))
    original = b.config_path.read_text()
    config = yaml.safe_load(original)
    [entry] = [m for m in config["members"] if m["name"] == "a"]
    entry["certificate"] = [entry["certificate"], "keys/a-renewed.crt"]
    b.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "xmppbridge.cli", "quarantine", "release", "-c", str(b.config_path),
             str(record.id)], capture_output=True, text=True, timeout=60)
    finally:
        b.config_path.write_text(original)
        anchor.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "released: mirrored: new" in result.stdout
    with closing(store_of(federation, "b")) as store:
        [entry] = [e for e in store.entries(limit=100_000) if e.item_id == "renewed"]
        assert entry.signer_subject == "CN=CSIRT A renewed" and entry.service == "pubsub.a.test"


def test_a_relayed_item_survives_xmpp(federation: Consortium) -> None:
    # B trusts only A, so A relays its own item here; what matters is that both signatures, each in its
    # own AdditionalData, come through Prosody intact and verify at B.
    a = federation["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    original = sign_document(etree.fromstring(iodef2("H-RELAYED")), identity)
    inject(federation, {"relayed": relay_sign(original, identity)})

    def mirrored() -> list[object]:
        with closing(store_of(federation, "b")) as store:
            return [e for e in store.entries(limit=100_000) if e.item_id == "relayed"]

    [entry] = eventually(mirrored, what="the relayed item mirrored at B")
    assert entry.xml.count(b'meaning="relay-signature"') == 1
