"""End to end on real Prosody servers: publish at A, federate over s2s, verify and mirror at B."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import SAMPLES
from tests.integration import eventually
from xmppbridge.demo.consortium import Consortium
from xmppbridge.paths.publish import prepare
from xmppbridge.signing.keys import generate_identity_files, load_identity
from xmppbridge.store import Store
from xmppbridge.store.items import SignedItem

pytestmark = pytest.mark.integration
ATOM = "{http://www.w3.org/2005/Atom}"


def iodef2(incident_id: str, *, restriction: str = "need-to-know", purpose: str = "mitigation",
           description: str = "Botnet C2 seen at 192.0.2.10") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<IODEF-Document version="2.00" xml:lang="en" xmlns="urn:ietf:params:xml:ns:iodef-2.0">
  <Incident purpose="{purpose}" restriction="{restriction}">
    <IncidentID name="csirt.a.test">{incident_id}</IncidentID>
    <GenerationTime>2026-11-20T08:30:00Z</GenerationTime>
    <Description>{description}</Description>
    <Contact role="creator" type="organization"><Email><EmailTo>csirt@a.test</EmailTo></Email></Contact>
  </Incident>
</IODEF-Document>
""".encode()


def store_of(federation: Consortium, name: str) -> Store:
    return Store(federation[name].workdir / "data" / f"{name}.sqlite")


def mirrored_at_b(federation: Consortium, incident_id: str) -> list:
    with closing(store_of(federation, "b")) as store:
        return [e for e in store.entries(limit=10_000) if e.incident.id == incident_id]


def test_published_incident_is_verified_and_mirrored_at_b(federation: Consortium, tmp_path: Path) -> None:
    document = tmp_path / "inc.xml"
    document.write_bytes(iodef2("INC-1001"))
    result = federation.publish("a", document)
    assert result.returncode == 0, result.stderr
    assert "published to iodef/need-to-know/mitigation on pubsub.a.test" in result.stdout

    [entry] = eventually(lambda: mirrored_at_b(federation, "INC-1001"), what="INC-1001 at B")
    assert entry.origin == "remote"
    assert entry.service == "pubsub.a.test" and entry.node == "iodef/need-to-know/mitigation"
    assert load_identity(federation["a"].workdir / "keys/a.key",
                         federation["a"].workdir / "keys/a.crt").fingerprint == entry.signer_fingerprint
    assert entry.incident.restriction == "need-to-know" and entry.incident.purpose == "mitigation"

    # B's feed serves it, with a link to the signed IODEF document as received.
    b = federation["b"]
    with urllib.request.urlopen(urllib.request.Request(b.feed_url + "feeds/need-to-know",
                                                       headers=b.basic_auth())) as response:
        feed = etree.fromstring(response.read())
    titles = [e.findtext(f"{ATOM}title") for e in feed.iter(f"{ATOM}entry")]
    assert any("Botnet C2" in (t or "") for t in titles), titles
    content = next(e for e in feed.iter(f"{ATOM}entry") if "Botnet" in e.findtext(f"{ATOM}title"))
    src = content.find(f"{ATOM}content").get("src")
    with urllib.request.urlopen(urllib.request.Request(src, headers=b.basic_auth())) as response:
        assert response.read() == entry.xml


def test_republished_incident_updates_instead_of_duplicating(federation: Consortium, tmp_path: Path) -> None:
    document = tmp_path / "inc.xml"
    document.write_bytes(iodef2("INC-1002", description="First assessment"))
    assert federation.publish("a", document).returncode == 0
    eventually(lambda: mirrored_at_b(federation, "INC-1002"), what="first version at B")

    document.write_bytes(iodef2("INC-1002", description="Revised assessment: also 192.0.2.77"))
    assert federation.publish("a", document).returncode == 0
    [entry] = eventually(
        lambda: [e for e in mirrored_at_b(federation, "INC-1002") if b"Revised" in e.xml] or None,
        what="revised version at B")
    assert len(mirrored_at_b(federation, "INC-1002")) == 1
    assert entry.updated_at >= entry.received_at


def test_bad_items_are_rejected_with_reason_and_the_bridge_keeps_running(
        federation: Consortium, tmp_path: Path) -> None:
    a = federation["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    # Claims A's domain, so that our own publish path signs it; B does not know the certificate.
    generate_identity_files("Mallory", tmp_path / "m.key", tmp_path / "m.crt", domains=("a.test",))
    stranger = load_identity(tmp_path / "m.key", tmp_path / "m.crt")

    [good] = prepare(iodef2("INC-2001"), prefix="iodef", identity=identity, max_bytes=400_000)
    tampered = good.xml.replace(b"192.0.2.10", b"192.0.2.66")
    [untrusted] = prepare(iodef2("INC-2002"), prefix="iodef", identity=stranger, max_bytes=400_000)
    not_iodef = b'<report xmlns="urn:example:not-iodef"><text>hello</text></report>'

    # The publishing bridge sends whatever its outbox holds, so the outbox is where these are injected.
    with closing(store_of(federation, "a")) as store:
        for item_id, payload in (("tampered", tampered), ("untrusted", untrusted.xml),
                                 ("not-iodef", not_iodef)):
            store.enqueue(SignedItem(good.node, item_id, payload, good.incident, "2.0"), source="test")

    def rejects() -> dict[str, object]:
        with closing(store_of(federation, "b")) as store:
            found = {r.item_id: r for r in store.rejects(limit=1000)}
        return found if {"tampered", "untrusted", "not-iodef"} <= found.keys() else {}

    found = eventually(rejects, what="three rejects at B")
    assert found["tampered"].reason in ("bad-digest", "bad-signature")
    assert found["untrusted"].reason == "unknown-signer"
    assert found["not-iodef"].reason in ("wrong-namespace", "signature-missing")
    assert found["not-iodef"].raw == not_iodef
    assert found["tampered"].raw == tampered
    assert not mirrored_at_b(federation, "INC-2002")

    # Still running and still mirroring.
    assert federation["b"].bridge.poll() is None
    document = tmp_path / "after.xml"
    document.write_bytes(iodef2("INC-2003"))
    assert federation.publish("a", document).returncode == 0
    eventually(lambda: mirrored_at_b(federation, "INC-2003"), what="INC-2003 at B after the rejects")


def test_every_sample_is_published_and_mirrored(federation: Consortium) -> None:
    samples = sorted(SAMPLES.glob("*.xml"))
    assert len(samples) >= 6
    result = federation.publish("a", *samples)
    assert result.returncode == 0, result.stderr
    reported = r": published to (\S+) on pubsub\.a\.test as item (\S+)$"
    published = set(re.findall(reported, result.stdout, re.M))
    assert len(published) > len(samples)  # one sample holds two Incidents of different restrictions

    def mirrored() -> bool:
        with closing(store_of(federation, "b")) as store:
            at_b = {(e.node, e.item_id) for e in store.entries(limit=10_000) if e.service == "pubsub.a.test"}
        return published <= at_b

    eventually(mirrored, timeout=30, what="all samples mirrored at B")
    with closing(store_of(federation, "b")) as store:
        assert not [r for r in store.rejects(limit=1000) if (r.node, r.item_id) in published]


def test_status_reports_connection_subscriptions_and_peers(federation: Consortium) -> None:
    result = subprocess.run([sys.executable, "-m", "xmppbridge.cli", "status", "--json", "-c",
                             str(federation["b"].config_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["jid"] == "bridge.b.test" and report["connection"] == "online"
    assert report["outbox_depth"] == 0
    nodes = {(s["service"], s["node"]) for s in report["subscriptions"]}
    assert ("pubsub.a.test", "iodef/need-to-know/mitigation") in nodes
    assert report["seconds_since_contact"]["pubsub.a.test"] is not None
    [peer] = report["peers"]
    assert (peer["service"], peer["reachable"]) == ("pubsub.a.test", True)
    text = subprocess.run([sys.executable, "-m", "xmppbridge.cli", "status", "-c",
                           str(federation["b"].config_path)], capture_output=True, text=True, timeout=60)
    assert "bridge bridge.b.test: online" in text.stdout and "peer pubsub.a.test: last contact" in text.stdout
