"""The XMPP side of the benchmarks: a private two-domain consortium and raw slixmpp peers to compare with.

Servers listen on 127.0.9.x only (``NET``), feeds on 29081+ and operator listeners on 30081+, so the
benchmarks can run beside the test suite. A benchmark that compares store setups side by side runs one
consortium per setup (``SETUP_IPS``), and the PostgreSQL stores in one private cluster on 127.0.0.172
(``postgres``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import psycopg
import yaml
from psycopg.rows import dict_row
from slixmpp import ComponentXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatcherId

from tests.postgres import Cluster, private_cluster
from xmppbridge.demo.consortium import Consortium
from xmppbridge.paths.publish import Publisher
from xmppbridge.signing.keys import load_identity
from xmppbridge.store import Store
from xmppbridge.store.db import parse_time
from xmppbridge.store.pg import translate

PUBSUB_NS = "http://jabber.org/protocol/pubsub"
# The members' addresses are in NET.x: 127.0.9 unless XMPPBRIDGE_BENCH_NET names other first three
# octets, so that benchmarks of several working copies can run at once without meeting.
NET = os.environ.get("XMPPBRIDGE_BENCH_NET", "127.0.9")
IPS = {"a": f"{NET}.2", "b": f"{NET}.3"}
# One consortium per store setup of a side-by-side run; the first is IPS. Not NET.100+ (benchmark 6).
SETUP_IPS = (IPS, {"a": f"{NET}.12", "b": f"{NET}.13"}, {"a": f"{NET}.22", "b": f"{NET}.23"})
PG_HOST = "127.0.0.172"
FEED_PORT_BASE = 29081
RESTRICTIONS = ("public", "partner", "need-to-know", "private")


class BenchConsortium(Consortium):
    """The demo consortium with its feeds moved off 127.0.0.1 to the members' own 127.0.9.x addresses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pg: dict[str, psycopg.Connection[Any]] = {}  # member -> the benchmark's own connection

    def write_files(self, **kwargs: Any) -> None:  # type: ignore[override]
        super().write_files(**kwargs)
        for member in self.members.values():
            config = yaml.safe_load(member.config_path.read_text())
            config["feed"]["listen"] = f"{member.ip}:{member.feed_port}"
            config["feed"]["base_url"] = self.feed_url(member.name)
            member.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def feed_url(self, name: str) -> str:
        member = self.members[name]
        return f"http://{member.ip}:{member.feed_port}/"

    def store(self, name: str) -> Store:
        return Store(self.members[name].store_url or self.db_path(name))

    def db_path(self, name: str) -> Path:
        return self.members[name].workdir / "data" / f"{name}.sqlite"

    def query(self, name: str, statement: str, *args: object) -> list[Any]:
        """``statement`` (SQLite's parameter style) on member ``name``'s store, whichever backend it is
        on; rows by column name. PostgreSQL: over one connection kept for the polls of the whole run
        (a connection per poll would cost the server a process start each time)."""
        url = self.members[name].store_url
        if url is None:
            return sql(self.db_path(name), statement, *args)
        if name not in self._pg:
            self._pg[name] = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        return self._pg[name].execute(translate(statement), args).fetchall()

    def stop(self) -> None:
        for conn in self._pg.values():
            conn.close()
        self._pg.clear()
        super().stop()

    def publisher(self, store: Store) -> Publisher:
        a = self.members["a"]
        identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
        return Publisher(store, identity, prefix="iodef", max_bytes=400_000)


@contextmanager
def consortium(workdir: Path, names: tuple[str, ...] = ("a", "b"), *, pubsub_wal: bool = False,
               ips: dict[str, str] = IPS,
               store_urls: dict[str, str] | None = None,
               servers: dict[str, str] | None = None) -> Iterator[BenchConsortium]:
    """Prosody of each member in ``names`` started, no bridges yet; everything stopped on the way out.

    Both members are in the registry whichever servers run: with A alone, B is the audience of A's
    non-public nodes, as it is in a federation (a member nobody may read from refuses to publish
    there, ``audience-empty``). ``pubsub_wal``: create each pubsub service's SQLite file in WAL mode
    before Prosody opens it (the mode is kept in the file; Prosody 0.12 has no setting for it), as
    deploy/prosody/domain.cfg.lua.in suggests for busy services. ``store_urls``: members whose store is
    PostgreSQL (``store.url``); ``servers``: members whose server is not Prosody (``{"a": "ejabberd"}``)."""
    lab = BenchConsortium(workdir, dict(ips), feed_port_base=FEED_PORT_BASE,
                          discovery_interval=1.0, check_interval=60.0, servers=servers)
    for name, url in (store_urls or {}).items():
        lab[name].store_url = url
    lab.write_files(subscriptions={"a": [], "b": ["a"] if "b" in names else []})
    if pubsub_wal:
        for name in names:
            lab[name].prosody.workdir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(lab[name].prosody.workdir / "pubsub.sqlite")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.close()
    try:
        for name in names:
            lab[name].prosody.start()
        yield lab
    finally:
        lab.stop()


@contextmanager
def postgres() -> Iterator[Cluster]:
    """A private PostgreSQL cluster (tests/postgres.py) on 127.0.0.172 for the members' stores, stopped
    and removed on the way out. Durable as deploy/ha/postgresql.conf has it (fsync and
    synchronous_commit on, the defaults): a commit waits for its WAL to be flushed to disk, where the
    SQLite store's (WAL, synchronous=NORMAL) waits for the write only. The tests' cluster runs without
    fsync."""
    with private_cluster(host=PG_HOST, settings={"fsync": "on", "shared_buffers": "256MB"}) as cluster:
        yield cluster


def postmaster_pid(cluster: Cluster) -> int:
    """The server's first process; its children are the backends, one per connection (``bench.cpu``)."""
    return int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])


def document(incident_id: str, restriction: str, purpose: str = "mitigation") -> bytes:
    """A small valid IODEF 2.0 document (about 3 KB once signed), as the fault-injection tests use."""
    return f"""<IODEF-Document version="2.00" xml:lang="en" xmlns="urn:ietf:params:xml:ns:iodef-2.0">
  <Incident purpose="{purpose}" restriction="{restriction}">
    <IncidentID name="csirt.a.test">{incident_id}</IncidentID>
    <GenerationTime>2026-11-20T08:30:00Z</GenerationTime>
    <Description>Block 192.0.2.{len(incident_id) % 250} (benchmark burst)</Description>
    <Contact role="creator" type="organization"><Email><EmailTo>csirt@a.test</EmailTo></Email></Contact>
  </Incident>
</IODEF-Document>""".encode()


def sql(path: Path, query: str, *args: object) -> list[sqlite3.Row]:
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def epoch(text: str) -> float:
    return parse_time(text).timestamp()


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class RawComponent(ComponentXMPP):
    """A bare slixmpp XEP-0114 component: publishes given bytes, records event arrivals."""

    def __init__(self, jid: str, secret: str, host: str, port: int) -> None:
        super().__init__(jid, secret, host, port, fix_error_ns=True)
        self.register_plugin("xep_0060")
        self.arrivals: dict[str, float] = {}  # item id -> time.time() of its event notification
        self.ready = asyncio.Event()
        self.add_event_handler("session_start", lambda _: self.ready.set())
        self.add_event_handler("pubsub_publish", self._on_publish)

    def _on_publish(self, msg: Any) -> None:
        self.arrivals[msg["pubsub_event"]["items"]["item"]["id"]] = time.time()

    async def publish(self, service: str, node: str, item_id: str, payload: bytes) -> None:
        """One publish IQ around ``payload``, written verbatim, awaited until its result."""
        reply = await self._pubsub_iq("set", service, f"<publish node={quoteattr(node)}><item "
                                      f"id={quoteattr(item_id)}>{payload.decode('utf-8')}</item></publish>")
        if reply["type"] == "error":
            raise RuntimeError(f"publish refused: {reply['error']['condition']}")

    async def fetch(self, service: str, node: str, item_id: str) -> bytes:
        """One items IQ for one item id; the raw reply bytes."""
        reply = await self._pubsub_iq("get", service, f"<items node={quoteattr(node)}>"
                                      f"<item id={quoteattr(item_id)}/></items>")
        if reply["type"] == "error":
            raise RuntimeError(f"fetch refused: {reply['error']['condition']}")
        return str(reply).encode()

    async def _pubsub_iq(self, iq_type: str, service: str, body: str) -> Any:
        """A hand-written pubsub IQ, sent verbatim; its reply (result or error)."""
        iq_id = self.new_id()
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_reply(stanza: Any) -> None:
            if not result.done():
                result.set_result(stanza)

        self.register_handler(Callback(f"iq-{iq_id}", MatcherId(iq_id), on_reply, once=True))
        self.send_raw(
            f"<iq type={quoteattr(iq_type)} id={quoteattr(iq_id)} from={quoteattr(self.boundjid.bare)} "
            f"to={quoteattr(service)}><pubsub xmlns='{PUBSUB_NS}'>{body}</pubsub></iq>"
        )
        try:
            return await asyncio.wait_for(result, 30)
        finally:
            self.remove_handler(f"iq-{iq_id}")


async def connect(lab: BenchConsortium, name: str) -> RawComponent:
    """A raw component under member ``name``'s bridge JID (its bridge must be stopped)."""
    member = lab[name]
    raw = RawComponent(member.bridge_jid, lab.secret, member.ip, member.prosody.component_port)
    raw.connect()
    await asyncio.wait_for(raw.ready.wait(), 15)
    return raw


async def close(raw: RawComponent) -> None:
    raw.disconnect()
    await asyncio.sleep(0.2)


async def publish_all(raw: RawComponent, service: str, items: list[tuple[str, str, bytes]],
                      window: int) -> list[float]:
    """Publish ``(node, item id, payload)`` with up to ``window`` IQs in flight; per-IQ latencies."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(window)

    async def one(node: str, item_id: str, payload: bytes) -> None:
        async with gate:
            start = time.perf_counter()
            await raw.publish(service, node, item_id, payload)
            latencies.append(time.perf_counter() - start)

    if window == 1:
        for item in items:
            await one(*item)
    else:
        await asyncio.gather(*(one(*item) for item in items))
    return latencies
