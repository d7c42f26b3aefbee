"""Prometheus metrics (prometheus-client), the ``/metrics`` route and the operator listener's app.

Counts come from the store at scrape time (published, received, rejected by reason, outbox depth,
connection state, peer health), so they are right across restarts and include what other processes (the
CLI) did.
Two latency histograms are observed in the process: publish latency (queued in the outbox -> published,
read from the outbox as items complete) and receive processing time (verify + store one item).
Failed feed logins come from the feed's throttle (``feed.throttle.AuthStats``), read at scrape time too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from xml.etree import ElementTree as ET

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xmppbridge.feed.throttle import CLIENT, USER, AuthStats
from xmppbridge.policy.affiliations import CHANGES
from xmppbridge.store.contracts import Counted
from xmppbridge.store.db import parse_time
from xmppbridge.xmpp.component import ItemSink

CONNECTION_STATES = ("online", "offline", "stopped")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class StoreCollector(Collector):
    """Reads the store on each scrape (``store.counts``)."""

    def __init__(self, store: Counted, connected: Callable[[], bool] | None) -> None:
        self.store, self.connected = store, connected

    def collect(self) -> Iterator[Metric]:
        rows = self.store.counts()
        published = CounterMetricFamily("xmppbridge_published", "Items published (or retracted) to our pubsub"
                                        " service", labels=["action"])
        for action, count in rows["published"]:
            published.add_metric([action], count)
        yield published
        failed = CounterMetricFamily("xmppbridge_publish_failed", "Outbox items the server refused")
        failed.add_metric([], rows["failed"][0][0])
        yield failed
        received = CounterMetricFamily("xmppbridge_received", "Item versions received from peers, verified"
                                       " and mirrored")
        received.add_metric([], rows["received"][0][0])
        yield received
        rejected = CounterMetricFamily("xmppbridge_rejected", "Distinct items refused and quarantined, by"
                                       " reason", labels=["reason"])
        for reason, count in rows["rejected"]:
            rejected.add_metric([reason], count)
        yield rejected
        approvals = GaugeMetricFamily("xmppbridge_subscription_requests", "Subscription requests to our nodes"
                                      " from bridges outside their audience, by state", labels=["state"])
        for state, count in rows["approvals"]:
            approvals.add_metric([state], count)
        yield approvals
        redelivered = CounterMetricFamily("xmppbridge_rejected_redelivered", "Times a peer offered an item"
                                          " already in the quarantine again")
        redelivered.add_metric([], rows["redelivered"][0][0])
        yield redelivered
        yield GaugeMetricFamily("xmppbridge_quarantine_held", "Quarantined items not released",
                                value=rows["held"][0][0])
        yield GaugeMetricFamily("xmppbridge_outbox_depth", "Outbox items waiting to be published",
                                value=rows["depth"][0][0])
        entries = GaugeMetricFamily("xmppbridge_entries", "Live entries in the mirror",
                                    labels=["origin", "restriction"])
        for origin, restriction, count in rows["entries"]:
            entries.add_metric([origin, restriction], count)
        yield entries
        recorded = rows["connection"][0][0] if rows["connection"] else "never started"
        state = GaugeMetricFamily("xmppbridge_connection_state", "1 for the component link's current state",
                                  labels=["state"])
        for name in (*CONNECTION_STATES, "never started"):
            state.add_metric([name], float(name == recorded))
        yield state
        connected = self.connected() if self.connected is not None else recorded == "online"
        yield GaugeMetricFamily("xmppbridge_connected", "1 while the component is connected to its server",
                                value=float(connected))
        yield from _peer_metrics(rows["peers"], time.time())


def _peer_metrics(rows: list[tuple[object, ...]], now: float) -> Iterator[Metric]:
    """Per peer service (``xmppbridge.peers``), from its row in the store."""
    reachable = GaugeMetricFamily("xmppbridge_peer_reachable", "1 while the peer service answers",
                                  labels=["service"])
    since = GaugeMetricFamily("xmppbridge_peer_state_since_seconds", "Seconds since the peer service"
                              " became reachable or unreachable", labels=["service"])
    for service, is_reachable, changed in rows:
        reachable.add_metric([str(service)], float(bool(is_reachable)))
        since.add_metric([str(service)], max(0.0, now - parse_time(str(changed)).timestamp()))
    yield reachable
    yield since


class AuthCollector(Collector):
    """The feed's failed logins: by reason (password, unknown-user, token), blocks started by scope
    (client address or user name), and attempts refused while blocked (answered 429)."""

    def __init__(self, stats: AuthStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily("xmppbridge_auth_failures", "Failed feed logins, by reason",
                                       labels=["reason"])
        for reason in sorted(set(self.stats.failures) | {"password", "unknown-user", "token"}):
            failures.add_metric([reason], self.stats.failures[reason])
        yield failures
        blocks = CounterMetricFamily("xmppbridge_auth_blocks", "Login backoffs started, by what was blocked",
                                     labels=["scope"])
        for scope in (CLIENT, USER):
            blocks.add_metric([scope], self.stats.blocks[scope])
        yield blocks
        refused = CounterMetricFamily("xmppbridge_auth_refused", "Login attempts refused unheard (429)"
                                      " while their client or user name was blocked")
        refused.add_metric([], self.stats.refused)
        yield refused


class LeaseCollector(Collector):
    """Whether this instance holds the store's lease and acts (``xmppbridge.process.leadership``): summed over
    every instance of one bridge, ``xmppbridge_active`` is 1. The label is ``instance_name``, not
    ``instance``, which Prometheus gives every scraped target itself."""

    def __init__(self, instance: str, active: Callable[[], bool], takeovers: Callable[[], int]) -> None:
        self.instance, self.active, self.takeovers = instance, active, takeovers

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("xmppbridge_active", "1 while this instance holds the lease and acts, 0 on"
                                   " standby", labels=["instance_name"])
        active.add_metric([self.instance], float(self.active()))
        yield active
        yield CounterMetricFamily("xmppbridge_lease_takeovers", "Times this instance took the lease",
                                  value=self.takeovers())


class BridgeMetrics:
    def __init__(self, store: Counted, *, connected: Callable[[], bool] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.store = store  # read only: metrics never write to (or lock) it
        self.registry.register(StoreCollector(store, connected))
        self.publish_latency = Histogram(
            "xmppbridge_publish_latency_seconds", "From queued in the outbox to published",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.receive_seconds = Histogram(
            "xmppbridge_receive_seconds", "Time to verify, classify and store one received item",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        # In-process, like the histograms: the audit lines of xmpp.reconcile say which change it was.
        self._affiliation_changes = Counter(
            "xmppbridge_affiliation_changes", "Changes made to our nodes' affiliations and subscriptions to"
            " follow their audiences", labelnames=["change"], registry=self.registry)
        for change in CHANGES:  # scraped as 0 before the first change, so rate() sees every one
            self._affiliation_changes.labels(change=change)
        # Only items published from now on: a histogram describes this process's lifetime.
        self._last_outbox_id = store.last_outbox_id()

    def refresh(self) -> None:
        """Observe the publish latency of outbox items completed since the last call."""
        for outbox_id, created, published in self.store.outbox_completed_since(self._last_outbox_id):
            self._last_outbox_id = outbox_id
            if published is not None:
                self.publish_latency.observe((published - created).total_seconds())

    def count_affiliation_change(self, change: str) -> None:
        """One of ``policy.affiliations.CHANGES``."""
        self._affiliation_changes.labels(change=change).inc()

    def exposition(self) -> bytes:
        self.refresh()
        return generate_latest(self.registry)

    def watch_logins(self, stats: AuthStats) -> None:
        self.registry.register(AuthCollector(stats))

    def watch_lease(self, instance: str, active: Callable[[], bool], takeovers: Callable[[], int]) -> None:
        self.registry.register(LeaseCollector(instance, active, takeovers))

    def scrape(self) -> tuple[bytes, str]:
        """Body and content type of a scrape, the form the feed app's ``metrics`` callback takes."""
        return self.exposition(), CONTENT_TYPE_LATEST

    def timed_sink(self, sink: ItemSink) -> ItemSink:
        return _TimedSink(sink, self.receive_seconds)


class _TimedSink:
    """An ItemSink that times the one it wraps."""

    def __init__(self, inner: ItemSink, histogram: Histogram) -> None:
        self.inner, self.histogram = inner, histogram

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None:
        started = time.perf_counter()
        try:
            self.inner.on_item(service, node, item_id, payload)
        finally:
            self.histogram.observe(time.perf_counter() - started)

    def on_retract(self, service: str, node: str, item_id: str) -> None:
        self.inner.on_retract(service, node, item_id)

    def batch(self) -> AbstractContextManager[object]:
        return self.inner.batch()


def metrics_routes(metrics: BridgeMetrics) -> list[web.RouteDef]:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/metrics", handler)]


def operator_app(metrics: BridgeMetrics | None,
                 health: Callable[[], Mapping[str, object]]) -> web.Application:
    """The operator listener (``metrics.listen``, loopback only): ``/metrics`` unless metrics are off,
    and the detailed ``/healthz`` (readiness, connection, outbox, peers), without logins."""
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response(dict(health()), headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        app.add_routes(metrics_routes(metrics))
    return app
