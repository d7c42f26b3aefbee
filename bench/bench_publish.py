"""Benchmark 2: publish throughput and latency to one Prosody.

Bridge: ``Publisher.submit`` in this process (validate + sign + commit to the outbox) while A's bridge
process drains the outbox (store + publish), until the outbox is empty. Raw: a slixmpp ComponentXMPP
under the same component JID (bridge stopped) publishing the same signed bytes to the same nodes of
the same server, sequentially and with 16 IQs in flight.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RUNS, table  # noqa: E402
from bench.lab import (  # noqa: E402
    RESTRICTIONS,
    BenchConsortium,
    close,
    connect,
    consortium,
    document,
    epoch,
    percentile,
    publish_all,
    sql,
    wait_for,
)

N = 300  # items per run


def bridge_run(lab: BenchConsortium, tag: str) -> tuple[float, float, float, float]:
    """(items/s, p50 s, p99 s, submit-only items/s) from the first submit to the outbox drained."""
    db = lab.db_path("a")
    started: dict[int, float] = {}
    with lab.store("a") as store:
        publisher = lab.publisher(store)
        t0 = time.time()
        for i in range(N):
            submitted = time.time()
            for accepted in publisher.submit(document(f"{tag}-{i:05d}", RESTRICTIONS[i % 4]), source="bench"):
                started[accepted.outbox_id] = submitted
        submit_rate = N / (time.time() - t0)
    wait_for(lambda: sql(db, "SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0] == 0, 300,
             "the outbox to drain")
    rows = sql(db, f"SELECT id, status, published_at FROM outbox WHERE id IN ({','.join(map(str, started))})")
    assert all(row["status"] == "published" for row in rows), "some items failed"
    done = {row["id"]: epoch(row["published_at"]) for row in rows}
    latencies = [done[i] - started[i] for i in started]
    return (N / (max(done.values()) - t0), percentile(latencies, 50), percentile(latencies, 99),
            submit_rate)


def payloads(lab: BenchConsortium, tag: str) -> list[tuple[str, str, bytes]]:
    rows = sql(lab.db_path("a"), "SELECT node, item_id, payload FROM outbox WHERE item_id LIKE ? ORDER BY id",
               f"%{tag}%")
    return [(row["node"], row["item_id"], bytes(row["payload"])) for row in rows]


async def raw_runs(lab: BenchConsortium, items: list[tuple[str, str, bytes]],
                   window: int) -> list[tuple[float, float, float]]:
    raw = await connect(lab, "a")
    results = []
    try:
        for run in range(RUNS):
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
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp, consortium(Path(tmp), ("a",)) as lab:
        lab.start_bridge("a")
        bridge_run(lab, "WARM")  # creates the four nodes, warms the caches
        bridge = [bridge_run(lab, f"P{run}") for run in range(RUNS)]
        items = payloads(lab, "P0-")
        size = statistics.median(len(p) for _, _, p in items)
        lab.stop_bridge("a")
        seq = asyncio.run(raw_runs(lab, items, 1))
        piped = asyncio.run(raw_runs(lab, items, 16))
    raw_seq = statistics.median(r[0] for r in seq)
    raw_w16 = statistics.median(r[0] for r in piped)
    print(f"Publish to one Prosody: N={N} signed items per run ({size:.0f} bytes median), "
          f"median of {RUNS} runs")
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


if __name__ == "__main__":
    main()
