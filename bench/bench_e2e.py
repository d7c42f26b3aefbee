"""Benchmark 3: federated end to end, A -> B, until the entry is in B's store.

Bridge: ``Publisher.submit`` in this process into A's outbox (A's bridge process publishes), B's bridge
process mirrors into B's store; latency = B's ``received_at`` minus the submit time. Raw: a slixmpp
component as bridge.a.test publishing the same signed bytes to the same nodes, and one as bridge.b.test
receiving the event notifications over the same s2s link (both bridges stopped); latency = arrival
minus send time. Offered rate 50/s, and saturation (bridge: submit as fast as possible; raw: W=16).
At saturation each process's time on a core and time waiting for one is recorded (bench/cpu.py), so
the table says where the bridge path's items/s went: into its own work, or into the servers waiting.

``bench_e2e.py [N] [RUNS] [--pubsub-wal] [--stores SETUPS]``: SETUPS, comma separated, says which
members' stores are on PostgreSQL (a private cluster, started and stopped here, ``bench.lab.postgres``):
``sqlite`` (none, the default), ``b-postgresql`` (B's, the mirroring member) or ``postgresql`` (A's and
B's). With several, each setup has a consortium of its own, the runs go round the setups (the order
turned every run), and the tables give each setup's figures and its ratio to the first setup's, run by
run, with the PostgreSQL server's processes in the CPU table.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RUNS, choices, positional, table  # noqa: E402
from bench.cpu import Budget, Usage  # noqa: E402
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
    postmaster_pid,
    publish_all,
    wait_for,
)

RATE = 50.0
N_RATE = 250  # items per paced run (5 s)
N_SAT = 2000  # items per saturation run: long enough for a steady state (`bench_e2e.py [N] [RUNS]`)
Result = tuple[float, float, float]  # items/s, p50 s, p99 s
SETUPS = {"sqlite": (), "b-postgresql": ("b",), "postgresql": ("a", "b")}  # members on PostgreSQL


@dataclass
class Series:
    """One setup's runs: bridge and raw, paced and at saturation, and the CPU budgets at saturation."""

    paced: list[Result] = field(default_factory=list)
    saturated: list[Result] = field(default_factory=list)
    raw_paced: list[Result] = field(default_factory=list)
    raw_saturated: list[Result] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    raw_budgets: list[Budget] = field(default_factory=list)


def servers(lab: BenchConsortium) -> dict[str, int]:
    return {f"{name.upper()}'s Prosody": lab[name].prosody.process.pid for name in ("a", "b")}


def bridge_run(lab: BenchConsortium, tag: str, count: int, rate: float | None,
               budget: Budget | None = None) -> Result:
    submitted: dict[str, float] = {}
    with lab.store("a") as store:
        publisher = lab.publisher(store)
        if budget:
            budget.start()
        t0 = time.time()
        for i in range(count):
            if rate is not None and (delay := t0 + i / rate - time.time()) > 0:
                time.sleep(delay)
            now = time.time()
            for accepted in publisher.submit(document(f"{tag}-{i:05d}", RESTRICTIONS[i % 4]), source="bench"):
                submitted[accepted.item.item_id] = now
    query = "SELECT item_id, received_at FROM entries WHERE incident_id LIKE ?"
    wait_for(lambda: len(lab.query("b", query, f"{tag}-%")) >= count, 300, f"B to mirror {tag}", 0.1)
    if budget:
        budget.stop()
    arrived = {row["item_id"]: epoch(row["received_at"]) for row in lab.query("b", query, f"{tag}-%")}
    latencies = [arrived[item_id] - start for item_id, start in submitted.items()]
    return count / (max(arrived.values()) - t0), percentile(latencies, 50), percentile(latencies, 99)


async def raw_run(lab: BenchConsortium, items: list[tuple[str, str, bytes]], rate: float | None,
                  tag: str, budget: Budget | None = None) -> Result:
    publisher, subscriber = await connect(lab, "a"), await connect(lab, "b")
    service = lab["a"].pubsub_jid
    try:
        batch = [(node, f"raw-{tag}-{item_id}", payload) for node, item_id, payload in items]
        sent: dict[str, float] = {}
        if budget:
            budget.start()
        t0 = time.time()
        if rate is None:
            for _, item_id, _ in batch:
                sent[item_id] = t0
            await publish_all(publisher, service, batch, 16)
        else:
            tasks = []
            for i, (node, item_id, payload) in enumerate(batch):
                if (delay := t0 + i / rate - time.time()) > 0:
                    await asyncio.sleep(delay)
                sent[item_id] = time.time()
                tasks.append(asyncio.ensure_future(publisher.publish(service, node, item_id, payload)))
            await asyncio.gather(*tasks)
        deadline = time.monotonic() + 120
        while not all(item_id in subscriber.arrivals for item_id in sent):
            if time.monotonic() > deadline:
                raise TimeoutError("raw subscriber did not get every item")
            await asyncio.sleep(0.02)
        if budget:
            budget.stop()
        latencies = [subscriber.arrivals[i] - s for i, s in sent.items()]
        last = max(subscriber.arrivals[i] for i in sent)
        return len(batch) / (last - t0), percentile(latencies, 50), percentile(latencies, 99)
    finally:
        await close(publisher)
        await close(subscriber)


def medians(results: list[Result]) -> Result:
    return (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results),
            statistics.median(r[2] for r in results))


def one_run(lab: BenchConsortium, run: int, n_sat: int, series: Series, pg_server: int | None) -> None:
    """A bridge run and a raw run back to back, each paced and at saturation: on a shared VM the speed
    drifts by a third within minutes, more than the effects measured here, so both sides see the same
    machine. ``pg_server``: the PostgreSQL server's first process, counted with its backends."""
    lab.start_bridge("a")
    lab.start_bridge("b")  # catches up with what earlier runs left on A's nodes
    if run == 0:
        bridge_run(lab, "WARM", 8, None)  # creates the four nodes; B discovers them (1 s)
    series.paced.append(bridge_run(lab, f"E{run}", N_RATE, RATE))
    trees = {"PostgreSQL": pg_server} if pg_server is not None else {}
    series.budgets.append(Budget({**servers(lab), "A's bridge": lab["a"].bridge.pid,
                                  "B's bridge": lab["b"].bridge.pid}, trees))
    series.saturated.append(bridge_run(lab, f"S{run}", n_sat, None, series.budgets[-1]))
    rows = lab.query("a", "SELECT node, item_id, payload FROM outbox WHERE item_id LIKE ?", f"%S{run}-%")
    items = [(row["node"], row["item_id"], bytes(row["payload"])) for row in rows]
    lab.stop_bridge("a")
    lab.stop_bridge("b")
    series.raw_paced.append(asyncio.run(raw_run(lab, items[:N_RATE], RATE, f"E{run}")))
    series.raw_budgets.append(Budget(servers(lab)))
    series.raw_saturated.append(asyncio.run(raw_run(lab, items, None, f"S{run}", series.raw_budgets[-1])))


def main() -> None:
    # bench_e2e.py [N] [RUNS] [--pubsub-wal] [--stores SETUPS]: --pubsub-wal puts the pubsub services'
    # SQLite files in WAL mode; --stores: see the module's docstring
    args = positional("--stores", flags=("--pubsub-wal",))
    wal = "--pubsub-wal" in sys.argv[1:]
    n_sat = int(args[0]) if args else N_SAT
    runs = int(args[1]) if len(args) > 1 else RUNS
    setups = choices("--stores", SETUPS, "sqlite")
    if setups == ["sqlite"]:
        single(n_sat, runs, wal)
    else:
        side_by_side(setups, n_sat, runs, wal)


def single(n_sat: int, runs: int, wal: bool) -> None:
    series = Series()
    with (tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp,
          consortium(Path(tmp), pubsub_wal=wal) as lab):
        for run in range(runs):
            one_run(lab, run, n_sat, series, None)
    paced, saturated, raw_paced, raw_saturated = (series.paced, series.saturated, series.raw_paced,
                                                  series.raw_saturated)
    print(f"End to end A -> B (federated Prosody, s2s), median of {runs} runs, each a bridge run and a raw "
          f"run back to back; N={N_RATE} at {RATE:.0f}/s, N={n_sat} at saturation"
          + ("; pubsub storage in WAL mode" if wal else ""))
    rows_out = []
    for label, ours, raw in (("50/s offered", paced, raw_paced), ("saturation", saturated, raw_saturated)):
        o, r = medians(ours), medians(raw)
        ratio = statistics.median(b[0] / w[0] for b, w in zip(ours, raw, strict=True))
        rows_out.append([label, f"{o[0]:.1f}", f"{o[1] * 1000:.1f}", f"{o[2] * 1000:.1f}",
                         f"{r[0]:.1f}", f"{r[1] * 1000:.1f}", f"{r[2] * 1000:.1f}", f"{ratio:.2f}"])
    print(table(rows_out, ["load", "bridge items/s", "p50 ms", "p99 ms", "raw items/s", "raw p50 ms",
                           "raw p99 ms", "ratio (median of runs)"]))
    print("runs (items/s): " + "; ".join(
        f"{name} [{', '.join(f'{r[0]:.0f}' for r in results)}]"
        for name, results in (("bridge 50/s", paced), ("bridge sat", saturated),
                              ("raw 50/s", raw_paced), ("raw sat", raw_saturated))))
    print("saturation ratio per run: " + ", ".join(
        f"{b[0] / w[0]:.2f}" for b, w in zip(saturated, raw_saturated, strict=True)))
    print("targets: ratio >= 0.7 at saturation; p99 < 200 ms at 50/s")
    print()
    print(cpu_table(series.budgets, series.raw_budgets, n_sat))


def side_by_side(setups: list[str], n_sat: int, runs: int, wal: bool) -> None:
    """One consortium per setup, all of them up for the whole session; each run goes round the setups,
    starting one further along every time, so that no setup always comes first after a raw run."""
    results = {setup: Series() for setup in setups}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp, ExitStack() as stack:
        cluster = stack.enter_context(postgres()) if any(SETUPS[s] for s in setups) else None
        labs = {}
        for i, setup in enumerate(setups):
            urls = {name: cluster.create_database(f"e2e_{setup.replace('-', '_')}_{name}")
                    for name in SETUPS[setup]} if cluster else {}
            labs[setup] = stack.enter_context(consortium(Path(tmp) / setup, pubsub_wal=wal, ips=SETUP_IPS[i],
                                                         store_urls=urls))
        pg_server = postmaster_pid(cluster) if cluster else None
        for run in range(runs):
            for setup in setups[run % len(setups):] + setups[:run % len(setups)]:
                one_run(labs[setup], run, n_sat, results[setup], pg_server if SETUPS[setup] else None)
    first = setups[0]
    print(f"End to end A -> B (federated Prosody, s2s), median of {runs} runs per setup, each a bridge run "
          f"and a raw run back to back, the setups taking turns (one consortium each); N={N_RATE} at "
          f"{RATE:.0f}/s, N={n_sat} at saturation" + ("; pubsub storage in WAL mode" if wal else ""))
    print("setups: " + "; ".join(f"{s}: " + (f"{' and '.join(n.upper() for n in SETUPS[s])} on PostgreSQL"
                                              if SETUPS[s] else "SQLite") for s in setups))
    rows = []
    for label, pick in (("50/s offered", lambda x: (x.paced, x.raw_paced)),
                        ("saturation", lambda x: (x.saturated, x.raw_saturated))):
        base = pick(results[first])[0]
        for setup in setups:
            ours, raw = pick(results[setup])
            o, r = medians(ours), medians(raw)
            vs_raw = statistics.median(b[0] / w[0] for b, w in zip(ours, raw, strict=True))
            per_run = [b[0] / f[0] for b, f in zip(ours, base, strict=True)]
            rows.append([label, setup, f"{o[0]:.1f}", f"{o[1] * 1000:.1f}", f"{o[2] * 1000:.1f}",
                         f"{r[0]:.1f}", f"{vs_raw:.2f}",
                         f"{statistics.median(per_run):.2f} [{', '.join(f'{x:.2f}' for x in per_run)}]"])
    print(table(rows, ["load", "setup", "bridge items/s", "p50 ms", "p99 ms", "raw items/s", "bridge / raw",
                       f"bridge / {first}'s (median of runs, [per run])"]))
    for setup in setups:
        x = results[setup]
        print(f"runs (items/s), {setup}: " + "; ".join(
            f"{name} [{', '.join(f'{r[0]:.0f}' for r in series)}]"
            for name, series in (("bridge 50/s", x.paced), ("bridge sat", x.saturated),
                                 ("raw sat", x.raw_saturated))))
    print("targets: bridge / raw >= 0.7 at saturation; p99 < 200 ms at 50/s; "
          "issue 16: on PostgreSQL >= 0.8x SQLite at saturation")
    print()
    print(setups_cpu_table(results, n_sat))


def cpu_table(bridge: list[Budget], raw: list[Budget], count: int) -> str:
    """Per item at saturation, median of the runs: ms on a core / ms waiting for one, per process."""
    names = list(dict.fromkeys([*bridge[0].pids, *raw[0].pids]))
    rows = [[_label(name), _cell(bridge, name, count), _cell(raw, name, count)] for name in names]
    rows.append(["all of them", _cell(bridge, None, count), _cell(raw, None, count)])
    rows.append(["cores left idle", f"{statistics.median(b.idle for b in bridge):.0%}",
                 f"{statistics.median(b.idle for b in raw):.0%}"])
    return (f"Where the time went at saturation, ms per item (median of {len(bridge)} runs): on a core / "
            "waiting for a core\n" + table(rows, ["process", "bridge run", "raw run"]))


def _cell(budgets: list[Budget], name: str | None, count: int) -> str:
    """One process's (or, for None, all processes') median ms per item: on a core / waiting for one."""
    if name is not None and name not in budgets[0].pids:
        return "-"  # not running in this kind of run
    used = [_total(b) if name is None else b.used.get(name) for b in budgets]
    if any(u is None for u in used):
        return "n/a"  # no scheduler statistics in this kernel
    cpu = statistics.median(u.cpu for u in used if u) / count * 1000
    waited = statistics.median(u.waited for u in used if u) / count * 1000
    return f"{cpu:.2f} / {waited:.2f}"


def setups_cpu_table(results: dict[str, Series], count: int) -> str:
    """``cpu_table`` with a column per setup's bridge runs, and the first setup's raw runs."""
    columns = [(f"{setup} bridge", series.budgets) for setup, series in results.items()]
    first = next(iter(results))
    columns.append((f"{first} raw", results[first].raw_budgets))
    names = list(dict.fromkeys(name for _, budgets in columns for name in budgets[0].pids))
    rows = [[_label(name), *(_cell(budgets, name, count) for _, budgets in columns)] for name in names]
    rows.append(["all of them", *(_cell(budgets, None, count) for _, budgets in columns)])
    rows.append(["cores left idle", *(f"{statistics.median(b.idle for b in budgets):.0%}"
                                      for _, budgets in columns)])
    return (f"Where the time went at saturation, ms per item (median of {len(results[first].budgets)} runs): "
            "on a core / waiting for a core\n" + table(rows, ["process", *(name for name, _ in columns)]))


def _total(budget: Budget) -> Usage:
    return Usage(sum(u.cpu for u in budget.used.values()), sum(u.waited for u in budget.used.values()))


def _label(name: str) -> str:
    return "this process (bridge: submit; raw: both raw clients)" if name == "this process" else name


if __name__ == "__main__":
    main()
