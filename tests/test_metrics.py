"""/metrics: what the store says, in Prometheus text format, parsed with the official parser."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.test_chat import add
from xmppbridge.peers import OK, classify
from xmppbridge.process.metrics import BridgeMetrics, metrics_routes
from xmppbridge.store import Store
from xmppbridge.store.items import ItemRef, Refused, SignedItem
from xmppbridge.xmpp.component import ItemSink


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_endpoint_reports_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    add(store, "R-1", "need-to-know")
    add(store, "R-1", "need-to-know", title="revised")  # a second received version
    entry = store.find_entry("pubsub.a.test", "iodef/need-to-know/mitigation", "R-1")
    for reason in ("bad-signature", "bad-signature", "unknown-signer"):
        store.add_reject(
            Refused("xmpp", reason, "m", reason.encode(), ItemRef("pubsub.b.test", "n", reason)),
        )
    store.set_state("connection", "online")
    store.record_peer("pubsub.b.test", classify("remote-server-not-found", "unable to resolve service"))
    store.record_peer("pubsub.c.test", OK)
    metrics = BridgeMetrics(store)
    queued = store.enqueue(
        SignedItem("iodef/public/reporting", "L-1", b"<x/>", entry.incident, "2.0"),
        source="test",
    )
    store.enqueue(SignedItem("iodef/public/reporting", "L-2", b"<y/>", entry.incident, "2.0"), source="test")
    store.mark_published(queued, service="pubsub.a.test")

    class Sink(ItemSink):
        def on_item(self, *args: object) -> None: ...
        def on_retract(self, *args: object) -> None: ...

    metrics.timed_sink(Sink()).on_item("pubsub.b.test", "n", "i", None)

    app = web.Application()
    app.add_routes(metrics_routes(metrics))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        found = samples(await response.text())
    store.close()

    assert found[("xmppbridge_received_total", ())] == 2
    assert found[("xmppbridge_published_total", (("action", "publish"),))] == 1
    assert found[("xmppbridge_outbox_depth", ())] == 1
    # Distinct refusals: the same bytes refused twice are one, counted again apart.
    assert found[("xmppbridge_rejected_total", (("reason", "bad-signature"),))] == 1
    assert found[("xmppbridge_rejected_total", (("reason", "unknown-signer"),))] == 1
    assert found[("xmppbridge_rejected_redelivered_total", ())] == 1
    assert found[("xmppbridge_peer_reachable", (("service", "pubsub.b.test"),))] == 0
    assert found[("xmppbridge_peer_reachable", (("service", "pubsub.c.test"),))] == 1
    assert found[("xmppbridge_peer_state_since_seconds", (("service", "pubsub.b.test"),))] >= 0
    assert found[("xmppbridge_quarantine_held", ())] == 2  # the same bytes twice are one record
    assert found[("xmppbridge_entries", (("origin", "remote"), ("restriction", "need-to-know")))] == 1
    assert found[("xmppbridge_connection_state", (("state", "online"),))] == 1
    assert found[("xmppbridge_connection_state", (("state", "offline"),))] == 0
    assert found[("xmppbridge_connected", ())] == 1
    assert found[("xmppbridge_publish_latency_seconds_count", ())] == 1
    assert found[("xmppbridge_receive_seconds_count", ())] == 1


def test_affiliation_changes_are_counted_per_change_from_zero(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        metrics = BridgeMetrics(store)
        name = "xmppbridge_affiliation_changes_total"
        before = samples(metrics.exposition().decode())
        assert {labels[0][1]: v for (n, labels), v in before.items() if n == name} == {
            "added": 0, "removed": 0, "subscription-cancelled": 0}
        metrics.count_affiliation_change("removed")
        metrics.count_affiliation_change("removed")
        assert samples(metrics.exposition().decode())[name, (("change", "removed"),)] == 2
