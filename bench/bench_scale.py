"""Benchmark: a consortium of N members, mesh, hub and spoke or regional hubs, here (issue 17, SCALING.md).

The consortium is the demo's (``demo.consortium.Consortium`` with a ``demo.topology``): one XMPP server
and one bridge process per member; in the mesh every member follows every other, in hub and spoke
(``--topology hub``) member a follows the others and relays what they publish (every restriction but
private, ``Topology.relay_section``) to the rest, which follow a alone; in a tree of hubs
(``--topology tree``) a and b are hubs following each other, each with half the others as spokes, and
relay what they get from their spokes and from each other; in a ring (``--topology ring [--hubs 3]``) a,
b, c, ... are, each following its two neighbours and with its share of the spokes. After a warm-up (each
member publishes one item per node, so every node exists and is discovered), each member publishes
``--items`` items (default 250), interleaved across the members at an aggregate offered rate of
``--rate`` items/s (default 20), through ``Publisher.submit`` into its own bridge's outbox, in this
process (as ``xmppbridge publish`` does in its own). Per run:

- exactly once: in every receiver's store, one entry per item it may see (``topology.ways``: from its
  publisher's service, or relayed, from the last hub's), at revision 1 with one change in the feed's change
  log; lost = expected but absent, duplicated = stored more than once over, or not expected at all; in a
  ring a hub may hold an item from any hub it follows that relayed it (``topology.ways``): one copy at
  least, once each, the later ones counted apart as second copies;
  quarantined: every refusal, less the hub's of the spokes' private items (``relay-refused``, by design:
  private is never relayed), counted apart;
- time to converge: from the first submit to the last delivery stored anywhere (``received_at``);
- delivery latency p50/p99 over every (item, receiver): the receiver's ``received_at`` minus the submit
  at the originator (for a relayed item, through the hubs), and apart by the relays its custody chain
  names (none, one hub, two, three: in a ring a longer way can come first);
- CPU seconds over the run (publishing until converged), seconds spent runnable but waiting for a core
  (``bench.cpu``: where latency goes when the machine is full), and peak RSS (VmHWM, the process's lifetime)
  of every bridge and every server (ejabberd: its Erlang VM with ejabberdctl, a process tree);
- s2s: established TCP connections from one member's server to port 5269 of another's, and the server
  pairs they link (a mesh of N needs N(N-1)/2, a hub and spoke or a tree N-1, a ring N);
- stored bytes per item: growth of the bridges' SQLite stores (checkpointed) per entry stored (the hub's
  relayed copies included), and of the servers' files per item published there (relays included).

``bench_scale.py [N ...] [--items 250] [--rate 20] [--servers prosody[,ejabberd]] [--topology
mesh|hub|tree|ring] [--hubs 3] [--hub-nice 0] [--keep]`` (default N = 4 8 16, mesh; ``--keep`` leaves the
members' logs and stores in the temporary directory it prints). ``--hub-nice -10`` (root) runs the hubs'
bridges and servers at that niceness: on one machine they get one share of the cores each, like every
spoke's, though they carry the whole consortium's traffic. It was meant to approximate a hub with cores of
its own, and does not: the starved spokes then read the hub's fan-out late (SCALING.md, "the 16-member hub
on ejabberd against Prosody").
Members on 127.0.<slot>.220-235 (XMPPBRIDGE_TEST_SLOT, default 0), feeds on 127.0.0.1:19100+, so the
integration tests (127.0.<slot>.200-203) can run beside it. Discovery every 10 s, checks every 60 s
(the shipped default). Take /tmp/xmppbridge-bench.lock (flock) for figures that go into SCALING.md.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import option, positional, table  # noqa: E402
from bench.cpu import Usage, tree_usage, usage  # noqa: E402
from bench.lab import RESTRICTIONS, document, epoch, percentile  # noqa: E402
from xmppbridge.config.settings import load_config  # noqa: E402
from xmppbridge.demo.consortium import Consortium  # noqa: E402
from xmppbridge.demo.topology import Shape, member_names, server_kinds, ways  # noqa: E402
from xmppbridge.paths.publish import Publisher  # noqa: E402
from xmppbridge.store import Store  # noqa: E402

SIZES = (4, 8, 16)
ITEMS, RATE = 250, 20.0
HOST_BASE, FEED_PORT = 220, 19100
DISCOVERY, CHECK = 10.0, 60.0
PURPOSE = "mitigation"
S2S_PORT = 5269


@dataclass
class Member:
    name: str
    kind: str
    bridge_cpu: float = 0.0
    bridge_waited: float = 0.0  # seconds runnable but waiting for a core (bench.cpu)
    bridge_rss: float = 0.0  # MB
    server_cpu: float = 0.0
    server_waited: float = 0.0
    server_rss: float = 0.0
    bridge_fds: int = 0  # most open at once during the run
    server_fds: int = 0
    dropped: int = 0  # times the bridge lost its connection to its server during the run (its log)


@dataclass
class Run:
    n: int
    started_servers: float = 0.0  # seconds
    started_bridges: float = 0.0
    warmed_up: float = 0.0
    offered: float = 0.0  # items/s achieved by the submit loop
    converged: float = 0.0
    drained: float = 0.0  # from the last submit to the last delivery
    expected: int = 0  # deliveries that must happen
    lost: int = 0
    duplicated: int = 0
    rejected: int = 0
    p50: float = 0.0
    p99: float = 0.0
    shape: str = "mesh"  # the topology's name
    hubs: tuple[str, ...] = ()
    second_copies: int = 0  # in a ring, a hub's copies of an item from a second way (mirrored, not relayed)
    relay_refused: int = 0  # the hubs' refusals of private items (never relayed, by design)
    # Relays on the way (0: from the publisher) -> deliveries: count, p50, p99
    by_hops: dict[int, tuple[int, float, float]] = field(default_factory=dict)
    relays_published: int = 0  # the hubs' relayed copies
    # Where a relayed delivery's time goes, with one hub: (leg, its count, p50, p99), ``relay_legs``
    legs: list[tuple[str, tuple[int, float, float]]] = field(default_factory=list)
    links: int = 0  # member pairs the topology links (Topology.links)
    s2s_connections: int = 0
    s2s_pairs: int = 0
    store_bytes_per_entry: float = 0.0
    server_bytes_per_item: float = 0.0
    members: list[Member] = field(default_factory=list)


def slot() -> int:
    return int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))


def incident(name: str, tag: str, i: int, restriction: str) -> bytes:
    return document(f"{tag}-{name.upper()}-{i:04d}", restriction, PURPOSE).replace(
        b"csirt.a.test", f"csirt.{name}.test".encode())


def server_root(consortium: Consortium, name: str) -> int:
    process = consortium[name].prosody.process
    assert process is not None
    return process.pid


def renice(root: int, niceness: int) -> None:
    """Every thread of ``root`` and of its descendants (niceness is per thread on Linux), and the
    scheduler's autogroup of ``root``'s session: with autogroups on (``kernel.sched_autogroup_enabled``,
    Debian's default), each session shares the cores as one, and a task's own niceness counts only
    within it. The servers and bridges run in sessions of their own (``start_new_session``)."""
    autogroup = Path(f"/proc/{root}/autogroup")
    if autogroup.exists() and os.getsid(root) != os.getsid(0):
        autogroup.write_text(f"{niceness}\n")
    for pid in tree_usage(root):
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
            except ProcessLookupError:
                continue


def log_size(consortium: Consortium, name: str) -> int:
    path = consortium.log_path(name)
    return path.stat().st_size if path.exists() else 0


def connections_lost(consortium: Consortium, name: str, since: int) -> int:
    """Lines of ``xmpp.component`` saying the bridge lost its server, in its log after byte ``since``:
    each reconnection fetches what the bridge may have missed again, from every peer it follows."""
    with open(consortium.log_path(name), "rb") as log:
        log.seek(since)
        return log.read().count(b"lost the connection to ")


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def tree_fds(root: int) -> int:
    return sum(fds(pid) for pid in tree_usage(root))


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def s2s(servers: dict[str, int], addresses: dict[str, str]) -> tuple[int, int]:
    """Established TCP connections to port 5269 of a member's address, and the member pairs they link.
    The connecting side's source address is not the member's own (servers dial out from 127.0.0.1),
    so the connection's socket says whose it is: the server process (tree) holding it open."""
    owner = {}
    for name, root in servers.items():
        for pid in tree_usage(root):
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        owner[target[8:-1]] = name
            except OSError:
                continue
    members = {ip: name for name, ip in addresses.items()}
    connections, pairs = 0, set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        rip, rport = _address(remote)
        if state != "01" or rport != S2S_PORT or rip not in members:  # 01: ESTABLISHED
            continue
        if (dialer := owner.get(inode)) is not None:
            connections += 1
            pairs.add(frozenset((dialer, members[rip])))
    return connections, len(pairs)


def _address(field: str) -> tuple[str, int]:
    ip, port = field.split(":")
    return socket.inet_ntoa(struct.pack("<I", int(ip, 16))), int(port, 16)


def directory_bytes(path: Path) -> int:
    total = 0
    # followlinks: an ejabberd member's files are behind the ``server`` link (demo.ejabberd)
    for root, _, files in os.walk(path.resolve(), followlinks=True):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def store_bytes(consortium: Consortium) -> int:
    """The members' stores, checkpointed so that the WAL's contents count in the file (retried while a
    bridge holds the write lock)."""
    total = 0
    for member in consortium.members.values():
        conn = sqlite3.connect(member.store_path, timeout=30)
        try:
            for _ in range(20):
                if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                    break
                time.sleep(0.2)
        finally:
            conn.close()
        total += member.store_path.stat().st_size
    return total


def remote_rows(consortium: Consortium, name: str, tag: str) -> list[tuple[str, str, int, int, str, int]]:
    """(service, item id, revision, changes, received_at, relays) of member ``name``'s entries from the
    others; relays: the hubs in its custody chain (``store.custody``: NULL when it came straight)."""
    conn = sqlite3.connect(consortium[name].store_path, timeout=30)
    try:
        return conn.execute(
            "SELECT service, item_id, revision, (SELECT count(*) FROM changes WHERE changes.entry_id ="
            " entries.id), received_at, coalesce(json_array_length(custody) - 1, 0) FROM entries"
            " WHERE origin = 'remote' AND incident_id LIKE ?",
            (f"{tag}-%",)).fetchall()
    finally:
        conn.close()


def rejects(consortium: Consortium, name: str, tag: str) -> Counter[tuple[str, str]]:
    """(source, reason) -> refusals of the ``tag`` run's items in member ``name``'s quarantine (a refused
    warm-up item would have kept the warm-up from converging)."""
    conn = sqlite3.connect(consortium[name].store_path, timeout=30)
    try:
        return Counter({(source, reason): count for source, reason, count in conn.execute(
            "SELECT source, reason, count(*) FROM rejects WHERE item_id IS NULL OR item_id LIKE ?"
            " GROUP BY source, reason",
            (f"%/{tag}-%",))})
    finally:
        conn.close()


def entries_of(consortium: Consortium, tag: str) -> int:
    """Entries of the ``tag`` run stored anywhere: received, published, and the hub's relayed copies."""
    total = 0
    for member in consortium.members.values():
        conn = sqlite3.connect(member.store_path, timeout=30)
        try:
            total += conn.execute("SELECT count(*) FROM entries WHERE incident_id LIKE ?",
                                  (f"{tag}-%",)).fetchone()[0]
        finally:
            conn.close()
    return total


def spread_of(latencies: list[float]) -> tuple[int, float, float]:
    """How many, p50, p99."""
    if not latencies:
        return 0, 0.0, 0.0
    return len(latencies), percentile(latencies, 50), percentile(latencies, 99)


def relay_times(consortium: Consortium, hub: str, tag: str) -> dict[str, tuple[float, float]]:
    """Item id -> when the hub queued its relay (in the transaction that stored the item, hub.py) and when
    its server took it (marked published), from the hub's outbox."""
    conn = sqlite3.connect(consortium[hub].store_path, timeout=30)
    try:
        rows = conn.execute("SELECT item_id, created_at, published_at FROM outbox WHERE source LIKE 'relay:%'"
                            " AND status = 'published' AND item_id LIKE ?", (f"%/{tag}-%",)).fetchall()
    finally:
        conn.close()
    return {item_id: (epoch(queued), epoch(published)) for item_id, queued, published in rows}


def relay_legs(arrivals: list[tuple[str, float]], submit_of: dict[str, float], at_hub: dict[str, float],
               relays: dict[str, tuple[float, float]]) -> list[tuple[str, tuple[int, float, float]]]:
    """Relayed deliveries ((item id, arrival at the spoke)) cut into their legs: from the submit to the
    hub's store; in the hub's outbox, until its server answered the publish and it was marked published;
    from that answer to the spoke's store (below 0 when the notification reached the spoke first)."""
    legs: dict[str, list[float]] = {"submit to the hub's store": [],
                                    "in the hub's outbox, to its server's answer": [],
                                    "hub's answer to the spoke's store": []}
    for item_id, arrived in arrivals:
        if item_id not in relays or item_id not in at_hub:
            continue
        queued, published = relays[item_id]
        for leg, seconds in zip(legs, (at_hub[item_id] - submit_of[item_id], published - queued,
                                       arrived - published), strict=True):
            legs[leg].append(seconds)
    return [(leg, spread_of(values)) for leg, values in legs.items()]


def relayed_copies(consortium: Consortium, hub: str, tag: str) -> int:
    """The hub's own entries of the ``tag`` run that other members originated: what it relayed."""
    conn = sqlite3.connect(consortium[hub].store_path, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM entries WHERE origin = 'local' AND incident_id LIKE ? AND "
                            "item_id NOT LIKE ?", (f"{tag}-%", f"csirt.{hub}.test/%")).fetchone()[0]
    finally:
        conn.close()


def publish(consortium: Consortium, tag: str, per_member: int, rate: float | None,
            categories: tuple[str, ...] = RESTRICTIONS) -> tuple[dict[tuple[str, str], float], float, float]:
    """Interleaved across the members at ``rate`` items/s in all (None: as fast as they sign): (publisher's
    service, item id) -> submit time, the first submit's time, and the offered rate achieved."""
    stores = {name: Store(m.store_path) for name, m in consortium.members.items()}
    try:
        publishers = {name: Publisher.for_config(store, load_config(consortium[name].config_path))
                      for name, store in stores.items()}
        names = list(consortium.members)
        submitted: dict[tuple[str, str], float] = {}
        t0 = time.time()
        for k in range(per_member * len(names)):
            name, i = names[k % len(names)], k // len(names)
            if rate is not None and (delay := t0 + k / rate - time.time()) > 0:
                time.sleep(delay)
            now = time.time()
            data = incident(name, tag, i, categories[i % len(categories)])
            for accepted in publishers[name].submit(data, source="bench"):
                submitted[(consortium[name].pubsub_jid, accepted.item.item_id)] = now
        return submitted, t0, len(submitted) / max(time.time() - t0, 1e-9)
    finally:
        for store in stores.values():
            store.close()


Ways = dict[str, dict[str, frozenset[str]]]  # receiver -> item id -> the services it may hold it from


def deliveries(consortium: Consortium, submitted: dict[tuple[str, str], float]) -> Ways:
    """Receiver -> item id -> the services it may hold the item from, at least one of them and each once:
    the publisher's, or a relaying hub's (same item id, ``relay.prepare_relay``). There is more than one
    only in a ring, where a hub may hold the copy of each way (``topology.ways``). Item i of a member is in
    category ``RESTRICTIONS[i % 4]`` (``publish``)."""
    services = {m.pubsub_jid: name for name, m in consortium.members.items()}
    audiences = {name: consortium.audiences(name) for name in consortium.members}
    expected: Ways = {name: {} for name in consortium.members}
    for service, item_id in submitted:
        publisher = services[service]
        restriction = RESTRICTIONS[int(item_id.rsplit("-", 1)[1]) % len(RESTRICTIONS)]
        for receiver, members in ways(consortium.topology, audiences, publisher, restriction,
                                      PURPOSE).items():
            expected[receiver][item_id] = frozenset(consortium[m].pubsub_jid for m in members)
    return expected


def lacking(held: Iterable[tuple[str, str]], expected: dict[str, frozenset[str]]) -> int:
    """How many items of ``expected`` the receiver holds by none of their ways; ``held``: (service, item
    id) of its entries."""
    have: dict[str, set[str]] = {}
    for service, item_id in held:
        have.setdefault(item_id, set()).add(service)
    return sum(1 for item_id, services in expected.items() if not have.get(item_id, set()) & services)


def wait_converged(consortium: Consortium, tag: str, expected: Ways, timeout: float,
                   watch: Run | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        short = {name: lacking(((s, i) for s, i, *_ in remote_rows(consortium, name, tag)), expected[name])
                 for name in consortium.members}
        if watch is not None:
            for m in watch.members:
                bridge = consortium[m.name].bridge
                assert bridge is not None
                m.bridge_fds = max(m.bridge_fds, fds(bridge.pid))
                m.server_fds = max(m.server_fds, tree_fds(server_root(consortium, m.name)))
        if not any(short.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tag}: not converged within {timeout:.0f} s; missing per member {short}")
        for name, member in consortium.members.items():
            if member.bridge is not None and member.bridge.poll() is not None:
                raise RuntimeError(f"bridge {name} exited:\n{consortium.log_tail(name)}")
        time.sleep(1.0)


def one_run(n: int, items: int, rate: float, servers: str, shape: Shape, workdir: Path,
            hub_nice: int = 0) -> Run:
    names = member_names(n)
    kinds = server_kinds(servers, names)
    addresses = {name: f"127.0.{slot()}.{HOST_BASE + i}" for i, name in enumerate(names)}
    consortium = Consortium(workdir, addresses, feed_port_base=FEED_PORT, discovery_interval=DISCOVERY,
                            check_interval=CHECK, servers=kinds, topology=shape.of(names))
    run = Run(n, members=[Member(name, kinds[name]) for name in names], shape=shape.kind,
              hubs=consortium.topology.hubs, links=len(consortium.topology.links()))
    consortium.write_files()
    try:
        start = time.monotonic()
        consortium.start_servers()
        run.started_servers = time.monotonic() - start
        start = time.monotonic()
        consortium.start_bridges(timeout=120.0 + 20.0 * n)
        run.started_bridges = time.monotonic() - start
        for name in run.hubs if hub_nice else ():
            hub = consortium[name]
            assert hub.bridge is not None
            renice(hub.bridge.pid, hub_nice)
            renice(server_root(consortium, name), hub_nice)

        # Warm-up: one item per node and member, so that every node exists and has been discovered.
        start = time.monotonic()
        warm, _, _ = publish(consortium, "W", len(RESTRICTIONS), None)
        wait_converged(consortium, "W", deliveries(consortium, warm), 300.0)
        run.warmed_up = time.monotonic() - start

        stores_before, entries_before = store_bytes(consortium), entries_of(consortium, "S")
        servers_before = sum(directory_bytes(m.prosody.workdir) for m in consortium.members.values())
        bridges = {name: m.bridge.pid for name, m in consortium.members.items() if m.bridge is not None}
        roots = {name: server_root(consortium, name) for name in names}
        cpu_before = {name: usage(pid) for name, pid in bridges.items()}
        server_before = {name: tree_usage(root) for name, root in roots.items()}

        logs_before = {name: log_size(consortium, name) for name in names}
        submitted, t0, run.offered = publish(consortium, "S", items, rate)
        expected = deliveries(consortium, submitted)
        run.expected = sum(map(len, expected.values()))
        wait_converged(consortium, "S", expected, 300.0 + 60.0 * n, run)

        for m in run.members:
            before, after = cpu_before[m.name], usage(bridges[m.name])
            used = after - before if before and after else Usage(float("nan"), float("nan"))
            m.bridge_cpu, m.bridge_waited = used.cpu, used.waited
            tree_after = tree_usage(roots[m.name])
            served = sum((u - server_before[m.name].get(pid, Usage(0, 0)) for pid, u in tree_after.items()),
                         Usage(0, 0))
            m.server_cpu, m.server_waited = served.cpu, served.waited
            m.bridge_rss = peak_rss_mb([bridges[m.name]])
            m.server_rss = peak_rss_mb(list(tree_after))
            m.dropped = connections_lost(consortium, m.name, logs_before[m.name])
        run.s2s_connections, run.s2s_pairs = s2s(roots, addresses)

        # A check round later (60 s): a late duplicate or a stray item would have landed by now.
        time.sleep(CHECK + 5)
        # Item ids name their originator's domain, so one id is one submit wherever it is relayed.
        submit_of = {item_id: at for (_, item_id), at in submitted.items()}
        origin_of = {item_id: service for service, item_id in submitted}
        latencies: dict[int, list[float]] = {}  # relays on the way -> seconds
        relayed_arrivals: list[tuple[str, float]] = []
        last = t0
        for name in names:
            rows = remote_rows(consortium, name, "S")
            for (service, item_id), count in Counter((s, i) for s, i, *_ in rows).items():
                # Not expected from there at all, or the same copy stored more than once over.
                run.duplicated += count if service not in expected[name].get(item_id, ()) else count - 1
            run.duplicated += sum(1 for _, _, revision, changes, *_ in rows if revision != 1 or changes != 1)
            # Each item's first copy is its delivery; a ring hub's later copies of it are second copies.
            first: dict[str, tuple[str, str, int, int, str, int]] = {}
            for row in sorted(rows, key=lambda row: epoch(row[4])):
                if row[0] in expected[name].get(row[1], ()):
                    run.second_copies += row[1] in first
                    first.setdefault(row[1], row)
            run.lost += len(expected[name]) - len(first)  # held by none of their ways
            refused = rejects(consortium, name, "S")
            if name in run.hubs:
                run.relay_refused += refused.pop(("relay", "relay-refused"), 0)
            run.rejected += sum(refused.values())
            for service, item_id, _, _, received_at, relays in first.values():
                arrived = epoch(received_at)  # by the relays it came through, not the fewest
                latencies.setdefault(relays, []).append(arrived - submit_of[item_id])
                if service != origin_of[item_id]:
                    relayed_arrivals.append((item_id, arrived))
                last = max(last, arrived)
        every = [seconds for values in latencies.values() for seconds in values]
        run.converged = last - t0
        run.drained = last - max(submitted.values())
        run.p50, run.p99 = percentile(every, 50), percentile(every, 99)
        run.by_hops = {count: spread_of(values) for count, values in sorted(latencies.items())}
        if len(run.hubs) == 1:  # with two hubs, a relayed delivery's legs are at one hub or the other
            [hub] = run.hubs
            at_hub = {item_id: epoch(at) for _, item_id, _, _, at, _ in remote_rows(consortium, hub, "S")}
            run.legs = relay_legs(relayed_arrivals, submit_of, at_hub, relay_times(consortium, hub, "S"))
        stored = entries_of(consortium, "S") - entries_before  # received, own, and the hubs' relayed copies
        run.relays_published = sum(relayed_copies(consortium, hub, "S") for hub in run.hubs)
        run.store_bytes_per_entry = (store_bytes(consortium) - stores_before) / stored
        servers_after = sum(directory_bytes(m.prosody.workdir) for m in consortium.members.values())
        run.server_bytes_per_item = (servers_after - servers_before) / (len(submitted) + run.relays_published)
        return run
    finally:
        consortium.stop()


def report(run: Run, items: int, rate: float, servers: str) -> str:
    def spread(values: list[float], unit: str = "") -> str:
        return f"median {statistics.median(values):.1f}{unit}, max {max(values):.1f}{unit}"

    def per_member(what: str, value: Callable[[Member], float], unit: str = "") -> list[list[str]]:
        """One row over every member, or the hubs' and the spokes' apart."""
        if not run.hubs:
            return [[what, spread([value(m) for m in run.members], unit)]]
        hubs = [m for m in run.members if m.name in run.hubs]
        spokes = [value(m) for m in run.members if m.name not in run.hubs]
        return [[f"{what}: hub", f"{value(hubs[0]):.1f}{unit}"] if len(hubs) == 1
                else [f"{what}: hubs", spread([value(m) for m in hubs], unit)],
                [f"{what}: spokes", spread(spokes, unit)]]

    def latency(label: str, measured: tuple[int, float, float]) -> list[list[str]]:
        count, p50, p99 = measured
        return [[f"{label} p50 / p99 ({count} deliveries)", f"{p50 * 1000:.0f} ms / {p99 * 1000:.0f} ms"]]

    bridges_cpu = [m.bridge_cpu for m in run.members]
    shape = ("Full mesh" if not run.hubs else f"Hub and spoke around {run.hubs[0]}" if len(run.hubs) == 1
             else f"{run.shape.capitalize()} of hubs {', '.join(run.hubs)}")
    words = ["direct from the publisher", "relayed by one hub", "relayed by two hubs",
             "relayed by three hubs"]
    relayed_by = {n: words[n] if n < len(words) else f"relayed by {n} hubs" for n in range(len(run.hubs) + 1)}
    hub_rows = [] if not run.hubs else [
        *(row for count, measured in run.by_hops.items() for row in latency(relayed_by[count], measured)),
        *(row for leg, measured in run.legs for row in latency(f"  relayed, {leg}", measured)),
        ["items relayed by the hubs / private items they kept (relay-refused)",
         f"{run.relays_published} / {run.relay_refused}"],
        *([["second copies the hubs mirrored (another way, not relayed)", f"{run.second_copies}"]]
          if run.shape == "ring" else []),
    ]
    lines = [
        f"{shape} of {run.n} members ({servers}), {items} items each at {rate:g} items/s aggregate "
        f"offered ({run.n * items} items, {run.expected} deliveries)",
        table([
            ["start servers / bridges / warm-up",
             f"{run.started_servers:.1f} s / {run.started_bridges:.1f} s / {run.warmed_up:.1f} s"],
            ["offered rate achieved", f"{run.offered:.1f} items/s"],
            ["lost / duplicated / quarantined", f"{run.lost} / {run.duplicated} / {run.rejected}"],
            ["time to converge (after the last submit)", f"{run.converged:.1f} s ({run.drained:.1f} s)"],
            *latency("delivery latency", (sum(c for c, _, _ in run.by_hops.values()), run.p50, run.p99)),
            *hub_rows,
            *per_member("bridge CPU s over the run", lambda m: m.bridge_cpu),
            *per_member("bridge peak RSS", lambda m: m.bridge_rss, " MB"),
            *per_member("server CPU s over the run", lambda m: m.server_cpu),
            *per_member("server peak RSS", lambda m: m.server_rss, " MB"),
            *per_member("bridge s waiting for a core", lambda m: m.bridge_waited),
            *per_member("server s waiting for a core", lambda m: m.server_waited),
            *per_member("connections a bridge lost to its server", lambda m: m.dropped),
            ["open fds, bridge / server (max)", f"{max(m.bridge_fds for m in run.members)} / "
                                                f"{max(m.server_fds for m in run.members)}"],
            ["s2s TCP connections / linked pairs", f"{run.s2s_connections} / {run.s2s_pairs} "
                                                   f"(of {run.links} in the topology)"],
            ["bridge store bytes per stored entry", f"{run.store_bytes_per_entry:.0f}"],
            ["server bytes per published item", f"{run.server_bytes_per_item:.0f}"],
        ], ["measure", "value"]),
        "",
        table([[m.name, m.kind, f"{m.bridge_cpu:.1f}", f"{m.bridge_rss:.0f}", f"{m.server_cpu:.1f}",
                f"{m.server_rss:.0f}"] for m in run.members],
              ["member", "server", "bridge CPU s", "bridge peak RSS MB", "server CPU s",
               "server peak RSS MB"]),
        f"CPU per delivery (all bridges): {1000 * sum(bridges_cpu) / max(run.expected, 1):.1f} ms; "
        f"per item published (all servers, relays included): "
        f"{1000 * sum(m.server_cpu for m in run.members) / (run.n * items + run.relays_published):.1f} ms",
    ]
    return "\n".join(lines)


def main() -> None:
    sizes = [int(arg) for arg in positional("--items", "--rate", "--servers", "--topology", "--hubs",
                                           "--hub-nice", flags=("--keep",))] \
        or list(SIZES)
    items, rate = int(option("--items", str(ITEMS))), float(option("--rate", str(RATE)))
    servers = option("--servers", "prosody")
    hubs = option("--hubs", "")
    shape = Shape(option("--topology", "mesh"), hubs=int(hubs) if hubs else None)
    hub_nice = int(option("--hub-nice", "0"))
    keep = "--keep" in sys.argv[1:]  # leave every member's logs and stores behind, for a run that failed
    for n in sizes:
        prefix = f"bench-scale-{n}-"
        workdir = (nullcontext(tempfile.mkdtemp(prefix=prefix)) if keep
                   else tempfile.TemporaryDirectory(prefix=prefix))
        with workdir as tmp:
            if keep:
                print(f"keeping {tmp}", flush=True)
            run = one_run(n, items, rate, servers, shape, Path(tmp), hub_nice)
        if hub_nice and run.hubs:
            print(f"(the hubs' bridges and servers at niceness {hub_nice}, the rest at 0)")
        print(report(run, items, rate, servers), flush=True)
        print(flush=True)


if __name__ == "__main__":
    main()
