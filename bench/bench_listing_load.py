"""Benchmark: what followers' periodic checks cost a member with full nodes, paced and unpaced (issue 17).

A hub's nodes are always full (SCALING.md, "Hub and spoke"), and listing a full node is the dearest thing
a follower asks of it (M4, M4'). This run measures that load with the shipped check interval (60 s),
with the pace on (``pubsub.check_pause`` 100, shipped) and off (0), and what it does to the member's
real work, its notifications. Member a (``--server prosody|ejabberd``) publishes; ``--followers F``
(default 4) members follow a alone, on Prosody. In turn:

1. fill: a publishes 4 × 5000 items (one full node per restriction, ``pubsub_max_items``) while every
   follower is up and receives them as notifications;
2. a catch-up of items already held: b's bridge restarts alone, then every follower's at once. A
   (re)connected bridge fetches every item of every node it follows again, to pick up items
   republished with new content while it was away (``Mirror.catch_up``); held bytes are passed over
   unverified (``Mirror.on_item``). Timed from the process start to ready (connected, subscribed,
   caught up), with a's server CPU over it and each restarted bridge's own CPU to ready. a's bridge,
   which follows no one, restarts first: its CPU to ready is a start without a catch-up, so a
   follower's CPU less a's, over the items, is a bridge's cost per held item (what a hub's restart
   pays for every spoke's items);
3. the load, once per pace: every follower's bridge restarts with it (a second catch-up of everything
   held, at once, timed like the first), then for ``--window`` seconds (default 900) a publishes one new
   item every 5 s (a trickle, round the four full nodes). Per window: a's server CPU, the listings the
   followers made (each periodic check records its node's sync, ``subscriptions.last_sync_at``), and the
   trickle's delivery latency to every follower (its ``received_at`` minus the submit), with every
   trickle item counted at every follower, exactly once.

    python3 bench/bench_listing_load.py [--followers 4] [--window 900] [--server prosody|ejabberd]
                                        [--per-node 5000]

(``--per-node`` fills the nodes only that far: a quick look at the script, not at a full hub.)

One run of each (the fill alone takes minutes). Members on 127.0.<slot>.220+ (XMPPBRIDGE_TEST_SLOT),
feeds on 127.0.0.1:19100+, as bench_scale.py; take /tmp/xmppbridge-bench.lock (flock) for figures that
go into SCALING.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_scale import FEED_PORT, HOST_BASE, incident, server_root, slot  # noqa: E402
from bench.common import choices, option, positional, table  # noqa: E402
from bench.cpu import Usage, tree_usage  # noqa: E402
from bench.lab import RESTRICTIONS, epoch, percentile, sql, wait_for  # noqa: E402
from xmppbridge.config.settings import load_config  # noqa: E402
from xmppbridge.demo.consortium import Consortium  # noqa: E402
from xmppbridge.demo.topology import member_names  # noqa: E402
from xmppbridge.paths.publish import Publisher  # noqa: E402
from xmppbridge.store import Store  # noqa: E402

PER_NODE = 5000  # pubsub_max_items, deploy/prosody and deploy/ejabberd
CHECK = 60.0  # the shipped check_interval
PACES = (100, 0)  # the shipped check_pause, then unpaced
TRICKLE = 5.0  # seconds between the window's new items
FOLLOWERS, WINDOW = 4, 900.0


@dataclass
class Restart:
    ready: dict[str, float]  # name -> seconds from its start to ready
    bridge_cpu: dict[str, float]  # name -> its bridge's CPU from its start to ready, s
    server_cpu: float  # the servers asked (a's), over it, s


@dataclass
class Window:
    pause: int
    catch_up: Restart  # every follower's, at once, before the window
    seconds: float = 0.0
    server_cpu: float = 0.0  # a's server over the window
    listings: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    published: list[float] = field(default_factory=list)  # submit to a's server's answer (a's outbox)
    listed_at: list[float] = field(default_factory=list)  # s into the window, each listing seen
    slow: list[tuple[float, float]] = field(default_factory=list)  # (s into the window, slowest delivery)
    lost: int = 0
    duplicated: int = 0


def server_cpu(consortium: Consortium, name: str = "a") -> float:
    """``name``'s server process tree on a core, seconds (ejabberd: its VM and ejabberdctl)."""
    return sum((u for u in tree_usage(server_root(consortium, name)).values()), Usage(0, 0)).cpu


def held(consortium: Consortium, name: str, tag: str) -> int:
    return sql(consortium[name].store_path, "SELECT count(*) FROM entries WHERE origin = 'remote'"
               " AND incident_id LIKE ?", f"{tag}-%")[0][0]


def syncs(consortium: Consortium, name: str) -> dict[str, str]:
    rows = sql(consortium[name].store_path, "SELECT node, last_sync_at FROM subscriptions")
    return {str(node): str(at) for node, at in rows if at}


def submit(publisher: Publisher, tag: str, i: int, name: str = "a") -> str:
    """Member ``name``'s item ``i`` of ``tag``, round the restrictions' nodes."""
    restriction = RESTRICTIONS[i % len(RESTRICTIONS)]
    [accepted] = publisher.submit(incident(name, tag, i, restriction), source="bench")
    return accepted.item.item_id


def set_pause(consortium: Consortium, name: str, pause: int) -> None:
    path = consortium[name].config_path
    config = yaml.safe_load(path.read_text())
    config["pubsub"]["check_pause"] = pause
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def bridge_cpu(consortium: Consortium, name: str) -> float:
    """``name``'s bridge process (and any children: feed processes) on a core so far, seconds."""
    bridge = consortium[name].bridge
    assert bridge is not None
    return sum((u for u in tree_usage(bridge.pid).values()), Usage(0, 0)).cpu


def restart(consortium: Consortium, names: list[str], timeout: float,
            servers: Sequence[str] = ("a",)) -> Restart:
    """Stop and start the bridges of ``names`` at once: each one's seconds and CPU from its start to
    ready, and the CPU of the servers of ``servers`` over it."""
    def servers_cpu() -> float:
        return sum(server_cpu(consortium, name) for name in servers)

    for name in names:
        consortium.stop_bridge(name)
    cpu, started = servers_cpu(), {}
    for name in names:
        consortium.launch_bridge(name)
        started[name] = time.monotonic()
    ready: dict[str, float] = {}
    used: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(ready) < len(names):
        for name in names:
            if name not in ready and consortium.health(name).get("ready"):
                ready[name] = time.monotonic() - started[name]
                used[name] = bridge_cpu(consortium, name)
            bridge = consortium[name].bridge
            if bridge is not None and bridge.poll() is not None:
                raise RuntimeError(f"bridge {name} exited:\n{consortium.log_tail(name)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready within {timeout:.0f} s: {sorted(set(names) - set(ready))}")
        time.sleep(0.2)
    return Restart(ready, used, servers_cpu() - cpu)


def window(consortium: Consortium, publisher: Publisher, followers: list[str], run: Window,
           seconds: float) -> None:
    tag = f"T{run.pause}"
    before = {name: syncs(consortium, name) for name in followers}
    listings = dict.fromkeys(followers, 0)
    submitted: dict[str, float] = {}
    cpu, t0, w0 = server_cpu(consortium), time.monotonic(), time.time()
    while (now := time.monotonic()) - t0 < seconds:
        if len(submitted) * TRICKLE <= now - t0:
            submitted[submit(publisher, tag, len(submitted))] = time.time()
        for name in followers:  # a listing recorded since the last poll (at most one per round)
            now_syncs = syncs(consortium, name)
            new = sum(1 for node, at in now_syncs.items() if before[name].get(node) != at)
            listings[name] += new
            run.listed_at += [now - t0] * new
            before[name] = now_syncs
        time.sleep(1.0)
    run.seconds, run.server_cpu = time.monotonic() - t0, server_cpu(consortium) - cpu
    run.listings = listings
    # The last trickle item has a check round to land, as a lost notification would (it is not lost).
    wait_for(lambda: all(held(consortium, name, tag) >= len(submitted) for name in followers), CHECK * 3,
             "every follower to hold the trickle", 1.0)
    slowest: dict[str, float] = {}  # item -> its slowest delivery
    for name in followers:
        rows = sql(consortium[name].store_path, "SELECT item_id, received_at FROM entries WHERE"
                   " origin = 'remote' AND incident_id LIKE ?", f"{tag}-%")
        ids = [str(item_id) for item_id, _ in rows]
        run.duplicated += len(ids) - len(set(ids))
        run.lost += len(set(submitted) - set(ids))
        for item_id, at in rows:
            if (key := str(item_id)) in submitted:
                late = epoch(str(at)) - submitted[key]
                run.latencies.append(late)
                slowest[key] = max(slowest.get(key, 0.0), late)
    # Where a slow delivery's time went: before a's server answered the publish, or after it.
    answered = {str(item_id): epoch(str(at)) for item_id, at in sql(
        consortium["a"].store_path, "SELECT item_id, published_at FROM outbox WHERE status = 'published'")
        if str(item_id) in submitted}
    run.published = [answered[item_id] - at for item_id, at in submitted.items() if item_id in answered]
    run.slow = sorted((submitted[item_id] - w0, late) for item_id, late in slowest.items() if late > 1.0)


@dataclass
class Result:
    filled: float  # s, the fill published and held by every follower
    idle: Restart  # a's bridge, which follows no one
    alone: Restart  # b's bridge alone
    runs: list[Window]


def one_run(followers: int, seconds: float, server: str, per_node: int, workdir: Path) -> Result:
    names = member_names(followers + 1)
    addresses = {name: f"127.0.{slot()}.{HOST_BASE + i}" for i, name in enumerate(names)}
    consortium = Consortium(workdir, addresses, feed_port_base=FEED_PORT, discovery_interval=10.0,
                            check_interval=CHECK, servers={"a": server})
    consortium.write_files(subscriptions={"a": [], **{name: ["a"] for name in names[1:]}})
    store = None
    try:
        consortium.start_servers()
        consortium.start_bridges(timeout=300.0)
        store = Store(consortium["a"].store_path)
        publisher = Publisher.for_config(store, load_config(consortium["a"].config_path))
        count = per_node * len(RESTRICTIONS)
        start = time.monotonic()
        for i in range(count):
            submit(publisher, "F", i)
        wait_for(lambda: all(held(consortium, name, "F") >= count for name in names[1:]), 3600.0,
                 "every follower to hold the fill", 2.0)
        filled = time.monotonic() - start
        # a follows no one: its restart is a bridge's start without a catch-up, the baseline for the
        # followers' bridge CPU per held item.
        idle = restart(consortium, ["a"], 300.0)
        alone = restart(consortium, ["b"], 1800.0)
        runs = []
        for pause in PACES:
            for name in names[1:]:
                set_pause(consortium, name, pause)
            run = Window(pause, restart(consortium, names[1:], 3600.0))
            window(consortium, publisher, names[1:], run, seconds)
            runs.append(run)
        return Result(filled, idle, alone, runs)
    finally:
        if store is not None:
            store.close()
        consortium.stop()


def report(followers: int, server: str, per_node: int, result: Result) -> str:
    count = per_node * len(RESTRICTIONS)
    baseline = result.idle.bridge_cpu["a"]
    lines = [f"a on {server} with {len(RESTRICTIONS)} nodes of {per_node} items ({count} in all), "
             f"{followers} followers on Prosody, check_interval {CHECK:.0f} s; one run",
             f"fill: {count} items published and received by every follower in {result.filled:.0f} s", "",
             f"a's bridge (follows no one) from its start to ready: {result.idle.ready['a']:.1f} s, "
             f"{baseline:.1f} s of CPU: the baseline a follower's bridge CPU per item is counted from", "",
             "A catch-up of items already held (every item fetched again, passed over as held):"]

    def row(who: str, restarted: Restart, fetched: int) -> list[str]:
        ready, used = restarted.ready.values(), statistics.median(restarted.bridge_cpu.values())
        return [who, f"{max(ready):.1f} (median {statistics.median(ready):.1f})",
                f"{fetched / max(ready):.0f}", f"{restarted.server_cpu:.1f}",
                f"{used:.1f} ({(used - baseline) / count * 1e3:.2f} ms)"]

    rows = [row("b alone", result.alone, count)]
    rows += [row(f"{followers} at once (before pause {run.pause})", run.catch_up, followers * count)
             for run in result.runs]
    lines.append(table(rows, ["who restarts", "s to ready (slowest)", "items/s fetched in all",
                              "a's server CPU s", "a follower's bridge CPU s, median (per item)"]))
    lines += ["", f"Over each window: a publishes one item every {TRICKLE:.0f} s; a's server's CPU, the "
              "followers' listings, and the trickle's delivery:"]
    rows = []
    for run in result.runs:
        listed = sum(run.listings.values())
        spread = (f"{percentile(run.latencies, 50):.2f} / {percentile(run.latencies, 99):.2f} / "
                  f"{max(run.latencies):.2f}")
        answered = (f"{percentile(run.published, 50):.2f} / {percentile(run.published, 99):.2f} / "
                    f"{max(run.published):.2f}") if run.published else "-"
        rows.append([f"{run.pause}" + (" (shipped)" if run.pause == PACES[0] else " (unpaced)"),
                     f"{run.seconds:.0f}", f"{run.server_cpu:.1f} ({run.server_cpu / run.seconds:.1%})",
                     f"{listed} ({listed * 60 / run.seconds / followers:.2f}/min each)",
                     spread, answered, f"{len(run.latencies)}", f"{run.lost} / {run.duplicated}"])
    lines.append(table(rows, ["check_pause", "window s", "a's server CPU s (share of a core)", "listings",
                              "delivery p50 / p99 / max s", "a's publish answered p50 / p99 / max s",
                              "deliveries", "lost / duplicated"]))
    for run in result.runs:  # when the slow deliveries were, against when the listings were seen
        listed = ", ".join(f"{t:.0f}" for t in run.listed_at) or "-"
        slow = ", ".join(f"{t:.0f}: {late:.1f}" for t, late in run.slow) or "none"
        lines.append(f"pause {run.pause}: listings seen at {listed} s into the window; items delivered later"
                     f" than 1 s somewhere (submitted at s: slowest s): {slow}")
    paced, unpaced = result.runs
    # Per second of window, so that windows of different lengths compare.
    more = sum(unpaced.listings.values()) / unpaced.seconds - sum(paced.listings.values()) / paced.seconds
    if more > 0:
        extra = unpaced.server_cpu / unpaced.seconds - paced.server_cpu / paced.seconds
        lines.append(f"a's server CPU per listing, from the difference (unpaced less paced, CPU s per s over "
                     f"listings per s): {extra / more:.2f} s")
    return "\n".join(lines)


def main() -> None:
    positional("--followers", "--window", "--server", "--per-node")
    followers, seconds = int(option("--followers", str(FOLLOWERS))), float(option("--window", str(WINDOW)))
    per_node = int(option("--per-node", str(PER_NODE)))
    server, *more = choices("--server", ("prosody", "ejabberd"), "prosody")
    if more or not 1 <= followers <= 15 or not 1 <= per_node <= PER_NODE:
        sys.exit(f"--server: one server kind; --followers: 1 to 15; --per-node: 1 to {PER_NODE}")
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp:
        result = one_run(followers, seconds, server, per_node, Path(tmp))
    print(report(followers, server, per_node, result))


if __name__ == "__main__":
    main()
