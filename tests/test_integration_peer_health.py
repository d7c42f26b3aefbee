"""Per-peer health and refusal counters on real federated Prosody (issue 14).

B follows A, which federates, and a domain that does not resolve. Its status, and the /healthz and
/metrics of its operator listener, say which is which, and why. Items that B refuses are counted once
each, however often its periodic check sees them again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import closing

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import eventually, loopback_consortium, running
from xmppbridge.demo.consortium import Consortium
from xmppbridge.paths.publish import Publisher
from xmppbridge.signing.keys import generate_identity_files, load_identity
from xmppbridge.store import Store

pytestmark = pytest.mark.integration

NOWHERE = "pubsub.nowhere.test"  # in no hosts file, and no name server answers for it
UNREACHABLE = ("remote-server-not-found", "remote-server-timeout", "timeout")
REFUSED = 3


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    consortium = loopback_consortium(tmp_path_factory.mktemp("peers"), {"a": 72, "b": 73},
                                     feed_port_base=18481, discovery_interval=1.0)  # checks every 1 s too
    consortium.write_files(subscriptions={"a": [], "b": ["a"]})
    config = yaml.safe_load(consortium["b"].config_path.read_text())
    # One more member, followed like A: a domain nobody runs (subscriptions derive from members:).
    keys = consortium.workdir / "keys"
    generate_identity_files("CSIRT NOWHERE signing key", keys / "nowhere.key", keys / "nowhere.crt",
                            domains=("nowhere.test",))
    config["members"].append({"name": "nowhere", "bridge": "bridge.nowhere.test", "pubsub": NOWHERE,
                              "domains": ["nowhere.test"], "certificate": "keys/nowhere.crt",
                              "follow": True})
    consortium["b"].config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    with running(consortium):
        yield consortium


def run_status(pair: Consortium, *options: str) -> str:
    """B's `xmppbridge status`, run as an operator would, beside the running bridge."""
    command = [sys.executable, "-m", "xmppbridge.cli", "status", "-c", str(pair["b"].config_path), *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def status(pair: Consortium) -> dict:  # type: ignore[type-arg]
    return json.loads(run_status(pair, "--json"))


def peers(report: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {peer["service"]: peer for peer in report["peers"]}


def healthz(pair: Consortium) -> tuple[int, dict]:  # type: ignore[type-arg]
    with urllib.request.urlopen(pair["b"].metrics_url + "healthz", timeout=10) as response:
        return response.status, json.load(response)


def metrics(pair: Consortium) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(pair["b"].metrics_url + "metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def settled(pair: Consortium) -> dict[str, dict] | None:  # type: ignore[type-arg]
    found = peers(status(pair))
    a, nowhere = found["pubsub.a.test"], found[NOWHERE]
    return found if a["reachable"] is True and nowhere["reachable"] is False else None


def test_status_healthz_and_metrics_say_which_peer_is_unreachable_and_why(pair: Consortium) -> None:
    found = eventually(lambda: settled(pair), timeout=90, interval=0.5, what="both peers' health")
    a, nowhere = found["pubsub.a.test"], found[NOWHERE]
    assert a["condition"] is None and a["since"] is not None
    assert nowhere["condition"] in UNREACHABLE, nowhere
    assert nowhere["since"] <= nowhere["error_at"]
    if nowhere["condition"] == "remote-server-not-found":
        assert nowhere["text"], "Prosody says why it could not find the server"

    text = run_status(pair)
    assert f"peer {NOWHERE}: never heard from, UNREACHABLE since" in text
    assert f"last error {nowhere['condition']}" in text
    assert re.search(r"peer pubsub\.a\.test: .*, reachable since", text), text

    code, health = healthz(pair)
    assert code == 200  # B itself works: degraded, not down
    assert health["status"] == "degraded" and health["ready"] is True
    assert {p["service"]: p["reachable"] for p in health["peers"]} == {"pubsub.a.test": True, NOWHERE: False}

    found_metrics = metrics(pair)
    assert found_metrics[("xmppbridge_peer_reachable", (("service", "pubsub.a.test"),))] == 1
    assert found_metrics[("xmppbridge_peer_reachable", (("service", NOWHERE),))] == 0
    assert found_metrics[("xmppbridge_peer_state_since_seconds", (("service", NOWHERE),))] >= 0


def document(incident_id: str) -> bytes:
    return f"""<IODEF-Document version="2.00" xml:lang="en" xmlns="urn:ietf:params:xml:ns:iodef-2.0">
  <Incident purpose="mitigation" restriction="public">
    <IncidentID name="csirt.a.test">{incident_id}</IncidentID>
    <GenerationTime>2026-11-20T08:30:00Z</GenerationTime>
    <Description>Signed with a key B does not trust</Description>
    <Contact role="creator" type="organization"><Email><EmailTo>csirt@a.test</EmailTo></Email></Contact>
  </Incident>
</IODEF-Document>""".encode()


def held_at_b(pair: Consortium) -> list[int]:
    """seen_count of each quarantine record B holds for A's items."""
    with closing(Store(pair["b"].workdir / "data" / "b.sqlite")) as store:
        return [r.seen_count for r in store.rejects(limit=1000) if r.service == "pubsub.a.test"]


def test_after_several_periodic_checks_rejected_counts_each_refusal_once(pair: Consortium) -> None:
    a = pair["a"]
    key, cert = a.workdir / "keys" / "rogue.key", a.workdir / "keys" / "rogue.crt"
    generate_identity_files("Rogue signer (a.test)", key, cert, domains=("a.test",))
    with closing(Store(a.workdir / "data" / "a.sqlite")) as outbox:
        publisher = Publisher(outbox, load_identity(key, cert), prefix="iodef", max_bytes=400_000)
        for n in range(REFUSED):
            publisher.submit(document(f"ROGUE-{n}"), source="test")

    eventually(lambda: len(held_at_b(pair)) == REFUSED, timeout=60, interval=0.5,
               what="B to quarantine the rogue items")
    # A notification and a catch-up fetch account for two sightings at most; the rest are B's
    # periodic checks of the node, one a second.
    eventually(lambda: min(held_at_b(pair)) >= 5, timeout=90, interval=0.5,
               what="several periodic checks to see the quarantined items again")

    found = metrics(pair)
    rejected = {labels: n for (name, labels), n in found.items() if name == "xmppbridge_rejected_total"}
    assert sum(rejected.values()) == len(held_at_b(pair)) == REFUSED
    assert rejected[(("reason", "unknown-signer"),)] == REFUSED
    assert found[("xmppbridge_rejected_redelivered_total", ())] >= REFUSED * 4
    assert found[("xmppbridge_quarantine_held", ())] == REFUSED
