"""Benchmark: a hub's restart, a catch-up of items already held from many members' servers at once (issue 17).

A reconnected bridge fetches every item of every node it follows again (``Mirror.catch_up``): a
revision keeps its item id, so that is how it learns what was republished while it was away. A spoke
follows one member, and ``bench_listing_load.py`` measured its restart bound by that member's server. A
hub follows every spoke, so after a restart it catches up from all their servers at once, and what
bounds it is its own side: its CPU per held item, and how many listings and fetches it keeps in flight.

Member a is the hub; ``--spokes S`` members (default 4) each fill their four nodes (one per restriction)
with ``--per-node`` items (default 2500), which a receives live and holds. Then b's bridge restarts (it
follows no one: a bridge's start without a catch-up, the baseline), and a's bridge restarts ``--rounds``
times (default 3), each timed from its process start to ready (connected, subscribed, caught up), with
its own CPU to ready and the spokes' servers' CPU over it. Every restart must leave a holding each item
exactly once.

``--trees before=PATH,after=PATH`` runs a's bridge from those source trees in turn (the order swapped
every round, against the VM's drift), on the same fill: medians per tree and their ratio, from one run.

    python3 bench/bench_hub_restart.py [--spokes 4] [--per-node 2500] [--rounds 3]
                                       [--trees before=PATH,after=PATH]

Members on 127.0.<slot>.220+ (XMPPBRIDGE_TEST_SLOT), feeds on 127.0.0.1:19100+, as bench_scale.py; take
/tmp/xmppbridge-bench.lock (flock) for figures that go into SCALING.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_listing_load import CHECK, Restart, restart, submit  # noqa: E402
from bench.bench_scale import FEED_PORT, HOST_BASE, slot  # noqa: E402
from bench.common import REPO, option, positional, table  # noqa: E402
from bench.lab import RESTRICTIONS, sql, wait_for  # noqa: E402
from xmppbridge.config.settings import load_config  # noqa: E402
from xmppbridge.demo.consortium import Consortium  # noqa: E402
from xmppbridge.demo.topology import member_names  # noqa: E402
from xmppbridge.paths.publish import Publisher  # noqa: E402
from xmppbridge.store import Store  # noqa: E402

SPOKES, PER_NODE, ROUNDS = 4, 2500, 3
HUB = "a"


@dataclass
class Result:
    held: int  # items a holds from the spokes
    filled: float  # s, published by the spokes and held by a
    idle: Restart  # b's bridge, which follows no one
    restarts: dict[str, list[Restart]] = field(default_factory=dict)  # tree -> a's restarts from it


def entries(consortium: Consortium) -> tuple[int, int]:
    """a's remote entries: (rows, distinct item ids)."""
    [(rows, distinct)] = sql(consortium[HUB].store_path, "SELECT count(*), count(DISTINCT service || '/' ||"
                             " node || '/' || item_id) FROM entries WHERE origin = 'remote'")
    return int(rows), int(distinct)


@contextmanager
def bridges_from(tree: Path) -> Iterator[None]:
    """Bridges launched inside run ``tree``'s code: ``python -m`` puts the working directory first on
    the module path (``Consortium.bridge_command``)."""
    here = Path.cwd()
    os.chdir(tree)
    try:
        yield
    finally:
        os.chdir(here)


def fill(consortium: Consortium, spokes: list[str], count: int) -> None:
    """``count`` items from each spoke, the spokes taking turns, so that every server works at once."""
    stores = {name: Store(consortium[name].store_path) for name in spokes}
    try:
        publishers = {name: Publisher.for_config(store, load_config(consortium[name].config_path))
                      for name, store in stores.items()}
        for i in range(count):
            for name, publisher in publishers.items():
                submit(publisher, "F", i, name)
    finally:
        for store in stores.values():
            store.close()


def one_run(spokes: int, per_node: int, rounds: int, trees: dict[str, Path], workdir: Path) -> Result:
    names = member_names(spokes + 1)
    addresses = {name: f"127.0.{slot()}.{HOST_BASE + i}" for i, name in enumerate(names)}
    consortium = Consortium(workdir, addresses, feed_port_base=FEED_PORT, discovery_interval=10.0,
                            check_interval=CHECK)
    consortium.write_files(subscriptions={HUB: names[1:], **{name: [] for name in names[1:]}})
    try:
        consortium.start_servers()
        consortium.start_bridges(timeout=300.0)
        count = per_node * len(RESTRICTIONS)
        start = time.monotonic()
        fill(consortium, names[1:], count)
        total = count * spokes
        wait_for(lambda: entries(consortium)[1] >= total, 3600.0, "a to hold the fill", 2.0)
        result = Result(total, time.monotonic() - start, restart(consortium, ["b"], 300.0))
        order = list(trees)
        for turn in range(rounds):
            for name in order if turn % 2 == 0 else order[::-1]:
                with bridges_from(trees[name]):
                    done = restart(consortium, [HUB], 3600.0, servers=names[1:])
                result.restarts.setdefault(name, []).append(done)
                if (holds := entries(consortium)) != (total, total):
                    raise AssertionError(f"after a restart from {name}, a holds {holds} (rows, distinct), "
                                         f"not {total} once each")
        return result
    finally:
        consortium.stop()


def report(spokes: int, per_node: int, result: Result) -> str:
    baseline = result.idle.bridge_cpu["b"]
    lines = [f"a, the hub, follows {spokes} spokes on Prosody, each with {len(RESTRICTIONS)} nodes of "
             f"{per_node} items: {result.held} items held; one run",
             f"fill: published by the spokes and held by a in {result.filled:.0f} s",
             f"b's bridge (follows no one) from its start to ready: {result.idle.ready['b']:.1f} s, "
             f"{baseline:.1f} s of CPU: the baseline a's CPU per item is counted from", "",
             "a's restarts (every held item fetched again from the spokes' servers, passed over as held):"]
    rows, medians = [], {}
    for tree, restarts in result.restarts.items():
        ready = [r.ready[HUB] for r in restarts]
        used = [r.bridge_cpu[HUB] for r in restarts]
        servers = [r.server_cpu for r in restarts]
        medians[tree] = statistics.median(ready)
        rows.append([tree, " ".join(f"{s:.1f}" for s in ready), f"{medians[tree]:.1f}",
                     f"{result.held / medians[tree]:.0f}",
                     f"{statistics.median(used):.1f} "
                     f"({(statistics.median(used) - baseline) / result.held * 1e3:.2f} ms)",
                     f"{statistics.median(servers):.1f}"])
    lines.append(table(rows, ["tree", "s to ready, each round", "median s", "items/s",
                              "a's bridge CPU s, median (per item)", "spokes' servers CPU s, median"]))
    if len(medians) > 1:
        first, *others = medians
        lines += [f"median time to ready, {other} / {first}: {medians[other] / medians[first]:.2f}"
                  for other in others]
    return "\n".join(lines)


def main() -> None:
    positional("--spokes", "--per-node", "--rounds", "--trees")
    spokes, per_node = int(option("--spokes", str(SPOKES))), int(option("--per-node", str(PER_NODE)))
    rounds = int(option("--rounds", str(ROUNDS)))
    trees = {name: Path(path).resolve() for name, path in
             (pair.split("=", 1) for pair in option("--trees", f"this={REPO}").split(","))}
    if not 1 <= spokes <= 15 or not 1 <= per_node <= 5000 or rounds < 1:
        sys.exit("--spokes: 1 to 15; --per-node: 1 to 5000; --rounds: 1 or more")
    if missing := [str(path) for path in trees.values() if not (path / "xmppbridge").is_dir()]:
        sys.exit(f"--trees: no xmppbridge package in {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="bench-hub-restart-") as tmp:
        result = one_run(spokes, per_node, rounds, trees, Path(tmp))
    print(report(spokes, per_node, result))


if __name__ == "__main__":
    main()
