"""Benchmark 5: catch-up of items published while B's bridge was down.

Per run a fresh pair of domains: both bridges start (B subscribes to A's nodes), B's bridge stops,
N items go through A's real publish path, then B's bridge starts and is timed until its store holds all
N. Compared with a raw slixmpp component (as bridge.b.test, bridge stopped) listing the same nodes
(disco#items) and fetching the same item ids, 16 in flight, from the same server over the same s2s link.

The shipped Prosody keeps 5000 items per node (pubsub_max_items), so N is spread over as many of the 20
restriction/purpose nodes as it needs, at least 4: the issue's 100,000 fill all 20.

    python3 bench/bench_catchup.py [N] [RUNS] [--server-a prosody|ejabberd]     # default 2000 items, 3 runs

``--server-a ejabberd`` runs A, the publisher whose nodes are listed and fetched, on ejabberd (its
shipped single-node configuration, deploy/ejabberd); B stays on Prosody.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RUNS, choices, positional, table  # noqa: E402
from bench.lab import (  # noqa: E402
    RESTRICTIONS,
    BenchConsortium,
    RawComponent,
    close,
    connect,
    consortium,
    document,
    epoch,
    sql,
    wait_for,
)
from xmppbridge.iodef.markings import PURPOSES  # noqa: E402

N = 2000  # items missed per run
WINDOW = 16
NODE_CAPACITY = 5000  # pubsub_max_items in deploy/prosody
CATEGORIES = [(r, p) for p in PURPOSES for r in RESTRICTIONS]  # 20 nodes; the first 4 are mitigation


def categories_for(count: int) -> list[tuple[str, str]]:
    return CATEGORIES[:max(4, -(-count // NODE_CAPACITY))]


def submit(lab: BenchConsortium, tag: str, count: int) -> dict[str, set[str]]:
    """Publish ``count`` documents at A and wait until A's outbox is empty; node -> item ids."""
    nodes: dict[str, set[str]] = {}
    categories = categories_for(count)
    with lab.store("a") as store:
        publisher = lab.publisher(store)
        for i in range(count):
            restriction, purpose = categories[i % len(categories)]
            data = document(f"{tag}-{i:06d}", restriction, purpose)
            for accepted in publisher.submit(data, source="bench"):
                nodes.setdefault(accepted.item.node, set()).add(accepted.item.item_id)
    db = lab.db_path("a")
    wait_for(lambda: sql(db, "SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0] == 0,
             600 + count / 20, "A's outbox to drain", 0.1)
    return nodes


async def raw_fetch(lab: BenchConsortium, nodes: dict[str, set[str]]) -> tuple[float, float]:
    """Seconds to list every node and fetch every item id, ``WINDOW`` at a time; and of that, the
    seconds the server took to list the nodes (Prosody loads a node's items to list their ids)."""
    raw: RawComponent = await connect(lab, "b")
    service = lab["a"].pubsub_jid
    try:
        start = time.perf_counter()
        listed = []
        for node in nodes:
            reply = await raw.plugin["xep_0030"].get_items(jid=service, node=node, ifrom=raw.boundjid.bare,
                                                           timeout=30)
            listed += [(node, name) for _jid, _node, name in reply["disco_items"]["items"] if name]
        listing = time.perf_counter() - start
        gate = asyncio.Semaphore(WINDOW)

        async def one(node: str, item_id: str) -> int:
            async with gate:
                return len(await raw.fetch(service, node, item_id))

        sizes = await asyncio.gather(*(one(node, item_id) for node, item_id in listed))
        elapsed = time.perf_counter() - start
    finally:
        await close(raw)
    assert len(sizes) >= sum(map(len, nodes.values())) and min(sizes) > 1000, "raw fetch incomplete"
    return elapsed, listing


def one_run(run: int, n: int, server_a: str) -> tuple[float, float, float, float]:
    """(bridge: process start -> all N stored, bridge: first -> last item stored, raw fetch, raw listing
    alone), seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp, \
            consortium(Path(tmp), servers={"a": server_a}) as lab:
        lab.start_bridge("a")
        lab.start_bridge("b")
        submit(lab, "WARM", 4)  # creates the nodes; B discovers and subscribes to them
        db_b = lab.db_path("b")
        wait_for(lambda: len(sql(db_b, "SELECT 1 FROM entries WHERE incident_id LIKE 'WARM-%'")) == 4, 60,
                 "B to mirror the warm-up items", 0.1)
        lab.stop_bridge("b")
        tag = f"C{run}"
        nodes = submit(lab, tag, n)
        query = "SELECT received_at FROM entries WHERE incident_id LIKE ?"
        start = time.time()
        lab.start_bridge("b", timeout=600 + n / 20)
        wait_for(lambda: len(sql(db_b, query, f"{tag}-%")) >= n, 600 + n / 20, "B to catch up", 0.05)
        stored = sorted(epoch(row["received_at"]) for row in sql(db_b, query, f"{tag}-%"))
        converged = stored[-1] - start
        lab.stop_bridge("b")
        lab.stop_bridge("a")
        raw, listing = asyncio.run(raw_fetch(lab, nodes))
    return converged, stored[-1] - stored[0], raw, listing


def main() -> None:
    args = positional("--server-a")
    n = int(args[0]) if args else N
    runs = int(args[1]) if len(args) > 1 else RUNS
    server_a, *more = choices("--server-a", ("prosody", "ejabberd"), "prosody")
    if more:
        sys.exit("--server-a: one server kind, prosody or ejabberd")
    results = [one_run(run, n, server_a) for run in range(runs)]
    converged = statistics.median(r[0] for r in results)
    stored = statistics.median(r[1] for r in results)
    raw = statistics.median(r[2] for r in results)
    print(f"Catch-up of N={n} items missed while B's bridge was down ({len(categories_for(n))} nodes, A on "
          f"{server_a}), median of {runs} run{'s' if runs > 1 else ''}, fresh servers per run")
    print(table([
        ["bridge B: process start -> all stored", f"{converged:.2f}", f"{n / converged:.0f}",
         f"[{', '.join(f'{r[0]:.2f}' for r in results)}]", f"{raw / converged:.2f}"],
        ["bridge B: first -> last item stored", f"{stored:.2f}", f"{n / stored:.0f}",
         f"[{', '.join(f'{r[1]:.2f}' for r in results)}]", f"{raw / stored:.2f}"],
        [f"raw slixmpp: list + fetch by id, W={WINDOW}", f"{raw:.2f}", f"{n / raw:.0f}",
         f"[{', '.join(f'{r[2]:.2f}' for r in results)}]", "1.00"],
    ], ["path", "seconds", "items/s", "runs (s)", "ratio (rate / raw)"]))
    listing = statistics.median(r[3] for r in results)
    print(f"of the raw time, listing the {len(categories_for(n))} nodes one after the other (disco#items): "
          f"{listing:.2f} s")


if __name__ == "__main__":
    main()
