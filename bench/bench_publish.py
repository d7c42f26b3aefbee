"""Benchmark 2: publish throughput and latency to one Prosody.

Bridge: ``Publisher.submit`` in this process (validate + sign + commit to the outbox) while A's bridge
process drains the outbox (store + publish), until the outbox is empty. Raw: a slixmpp ComponentXMPP
under the same component JID (bridge stopped) publishing the same signed bytes to the same nodes of
the same server, sequentially and with 16 IQs in flight.

``bench_publish.py [N] [RUNS] [--stores SETUPS]``: N items per run (300), RUNS runs (3). SETUPS, comma
separated, is where A's store is: ``sqlite`` (the default) or ``postgresql`` (a private cluster, started
and stopped here, ``bench.lab.postgres``). With both, each store has a consortium of its own, the runs
alternate between them (the order swapped every run), and the table gives each store's figures with its
ratio to the first store's, run by run: PostgreSQL against SQLite in one session.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RUNS, choices, positional, table  # noqa: E402
from bench.lab import (  # noqa: E402
    RESTRICTIONS,
    SETUP_IPS,
    BenchConsortium,
    close,
    connect,
    consortium,
    document,
    epoch,
    percentile,
    postgres,
    publish_all,
    wait_for,
)

N = 300  # items per run
STORES = ("sqlite", "postgresql")
WARM = 50  # items after each bridge start when the runs alternate between stores


def bridge_run(lab: BenchConsortium, tag: str, count: int = N) -> tuple[float, float, float, float]:
    """(items/s, p50 s, p99 s, submit-only items/s) from the first submit to the outbox drained."""
    started: dict[int, float] = {}
    with lab.store("a") as store:
        publisher = lab.publisher(store)
        t0 = time.time()
        for i in range(count):
            submitted = time.time()
            for accepted in publisher.submit(document(f"{tag}-{i:05d}", RESTRICTIONS[i % 4]), source="bench"):
                started[accepted.outbox_id] = submitted
        submit_rate = count / (time.time() - t0)
    wait_for(lambda: lab.query("a", "SELECT count(*) AS n FROM outbox WHERE status = 'pending'")[0]["n"] == 0,
             300, "the outbox to drain")
    rows = lab.query("a", "SELECT id, status, published_at FROM outbox "
                     f"WHERE id IN ({','.join(map(str, started))})")
    assert all(row["status"] == "published" for row in rows), "some items failed"
    done = {row["id"]: epoch(row["published_at"]) for row in rows}
    latencies = [done[i] - started[i] for i in started]
    return (count / (max(done.values()) - t0), percentile(latencies, 50), percentile(latencies, 99),
            submit_rate)


def payloads(lab: BenchConsortium, tag: str) -> list[tuple[str, str, bytes]]:
    rows = lab.query("a", "SELECT node, item_id, payload FROM outbox WHERE item_id LIKE ? ORDER BY id",
                     f"%{tag}%")
    return [(row["node"], row["item_id"], bytes(row["payload"])) for row in rows]


async def raw_runs(lab: BenchConsortium, items: list[tuple[str, str, bytes]],
                   window: int, runs: int = RUNS) -> list[tuple[float, float, float]]:
    raw = await connect(lab, "a")
    results = []
    try:
        for run in range(runs):
            batch = [(node, f"raw-w{window}-r{run}-{item_id}", payload) for node, item_id, payload in items]
            start = time.perf_counter()
            latencies = await publish_all(raw, lab["a"].pubsub_jid, batch, window)
            elapsed = time.perf_counter() - start
            results.append((len(batch) / elapsed, percentile(latencies, 50), percentile(latencies, 99)))
    finally:
        await close(raw)
    return results


def median_row(label: str, results: list[tuple[float, ...]], base: float | None) -> list[str]:
    rate = statistics.median(r[0] for r in results)
    p50 = statistics.median(r[1] for r in results)
    p99 = statistics.median(r[2] for r in results)
    runs = ", ".join(f"{r[0]:.0f}" for r in results)
    ratio = "" if base is None else f"{rate / base:.2f}"
    return [label, f"{rate:.1f}", f"[{runs}]", f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}", ratio]


def main() -> None:
    args = positional("--stores")
    count = int(args[0]) if args else N
    runs = int(args[1]) if len(args) > 1 else RUNS
    stores = choices("--stores", STORES, "sqlite")
    if stores == ["sqlite"]:
        single(count, runs)
    else:
        side_by_side(stores, count, runs)


def single(count: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp, consortium(Path(tmp), ("a",)) as lab:
        lab.start_bridge("a")
        bridge_run(lab, "WARM", count)  # creates the four nodes, warms the caches
        bridge = [bridge_run(lab, f"P{run}", count) for run in range(runs)]
        items = payloads(lab, "P0-")
        size = statistics.median(len(p) for _, _, p in items)
        lab.stop_bridge("a")
        seq = asyncio.run(raw_runs(lab, items, 1, runs))
        piped = asyncio.run(raw_runs(lab, items, 16, runs))
    raw_seq = statistics.median(r[0] for r in seq)
    raw_w16 = statistics.median(r[0] for r in piped)
    print(f"Publish to one Prosody: N={count} signed items per run ({size:.0f} bytes median), "
          f"median of {runs} runs")
    print(table([
        median_row("bridge: submit -> outbox drained", bridge, None),
        median_row("raw slixmpp, sequential", seq, None),
        median_row("raw slixmpp, pipelined W=16", piped, None),
    ], ["path", "items/s", "runs", "p50 ms", "p99 ms", ""]))
    bridge_rate = statistics.median(r[0] for r in bridge)
    submit = statistics.median(r[3] for r in bridge)
    print(f"\nsubmit alone (validate + sign + commit, in this process, bridge draining meanwhile): "
          f"{submit:.1f} items/s")
    print(f"ratio bridge / raw sequential: {bridge_rate / raw_seq:.2f}   "
          f"bridge / raw W=16: {bridge_rate / raw_w16:.2f}   (target >= 0.8)")


def side_by_side(stores: list[str], count: int, runs: int) -> None:
    """One consortium per store, the bridge of each started for its run only (so the other's idle
    polling costs nothing), with a short warm-up after each start; then raw W=16 on each server."""
    results: dict[str, list[tuple[float, float, float, float]]] = {store: [] for store in stores}
    raw: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp, ExitStack() as stack:
        cluster = stack.enter_context(postgres()) if "postgresql" in stores else None
        labs = {}
        for i, store in enumerate(stores):
            on_pg = cluster is not None and store == "postgresql"
            urls = {"a": cluster.create_database(f"publish_{store}_a")} if on_pg else {}
            labs[store] = stack.enter_context(consortium(Path(tmp) / store, ("a",), ips=SETUP_IPS[i],
                                                         store_urls=urls))
        for run in range(runs):
            for store in stores if run % 2 == 0 else stores[::-1]:
                lab = labs[store]
                lab.start_bridge("a")
                bridge_run(lab, f"W{run}", WARM)  # the first creates the four nodes
                results[store].append(bridge_run(lab, f"P{run}", count))
                lab.stop_bridge("a")
        for store, lab in labs.items():
            raw[store] = asyncio.run(raw_runs(lab, payloads(lab, "P0-"), 16, runs))
    first = stores[0]
    print(f"Publish to one Prosody, A's store on {' and '.join(stores)}: N={count} signed items per run, "
          f"median of {runs} runs, the stores alternating run by run (one consortium each)")
    rows = []
    for store in stores:
        row = median_row(f"bridge on {store}", results[store], None)
        submit = statistics.median(r[3] for r in results[store])
        paired = statistics.median(b[0] / s[0] for b, s in zip(results[store], results[first], strict=True))
        per_run = ", ".join(f"{b[0] / s[0]:.2f}" for b, s in zip(results[store], results[first], strict=True))
        rows.append([*row[:5], f"{submit:.0f}", f"{paired:.2f} [{per_run}]"])
    print(table(rows, ["path", "items/s", "runs", "p50 ms", "p99 ms", "submit items/s",
                       f"ratio to {first} (median of runs, [per run])"]))
    raw_rate = {store: statistics.median(r[0] for r in raw[store]) for store in stores}
    print("raw slixmpp W=16 on each store's server (items/s): " + "; ".join(
        f"{store} {raw_rate[store]:.1f}" for store in stores))
    print("ratio bridge / raw W=16, same server: " + "; ".join(
        f"{store} {statistics.median(r[0] for r in results[store]) / raw_rate[store]:.2f}"
        for store in stores))
    print("target (issue 16): PostgreSQL >= 0.8x SQLite")


if __name__ == "__main__":
    main()
