"""Benchmark 7: feed requests/s with 1, 2 and 4 ``xmppbridge serve-feed`` processes over one store.

The store is benchmark 4's (``bench_feed.prepare``: real mirrored entries and bulk copies, every table the
feed reads consistent), 100,000 entries by default; ``BENCH_FEED_STORE=DIR`` keeps and reuses it as
there. The processes are the real command (``xmppbridge serve-feed -c CONFIG --listen ...``), started
and stopped here, on 127.0.9.3, feed ports 29101+ and operator listeners 30101+.

How requests are spread: **round-robin over the processes' own ports, by connection** (default). This
process keeps ``--connections`` HTTP/1.1 keep-alive connections, connection k to process k mod N, each
sending its next request when the previous answer is read. Every process gets the same share of the
load, exactly, so the ratio measures the processes and not a balancer; it is what a load balancer
with least-connections or round-robin to N upstream ports does. ``--spread reuse-port`` measures the
other way instead: every process on one port with SO_REUSEPORT (``serve-feed --reuse-port``), the kernel
assigning each new connection to a process by a hash of its addresses, which is cheaper to deploy (no
balancer) but spreads a few long-lived connections unevenly.

``--store postgresql`` serves benchmark 4's PostgreSQL copy of the store instead (``bench_feed
.postgresql_store``: kept and reused with ``BENCH_FEED_STORE``), through a copy of the config with
``store.url``; ``--store both`` measures both, taking turns run by run. PostgreSQL's server processes
run on the same 2 cores: the CPU table names them (``postgres``, the backends of the feed processes'
connections and the cluster's own processes).

The client is a minimal asyncio HTTP/1.1 client (one write per request, the answer read by its
Content-Length), not aiohttp's: on 2 cores the load generator shares the CPU with the servers, and the
less it takes, the more the figures say about the servers. ``bench.cpu`` reports where the CPU went.

    python3 bench/bench_feed_processes.py [ENTRIES] [--seconds S] [--connections C] [--spread MODE]
                                          [--store sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_feed import BACKENDS, NAMES, postgresql_store, prepare, rss_mb  # noqa: E402
from bench.common import RUNS, table  # noqa: E402
from bench.cpu import Budget  # noqa: E402
from bench.lab import IPS  # noqa: E402

HOST = IPS["b"]
PORT = 29101
PROCESSES = (1, 2, 4)
REQUESTS = {  # name -> path; anonymous readers see every collection in this lab (loopback only)
    "page of 50 (newest, need-to-know)": "/feeds/need-to-know?count=50",
    "entry document": "/entries/4",
}


@contextmanager
def feed_processes(config: Path, count: int, spread: str, logs: Path) -> Iterator[list[tuple[int, int]]]:
    """``count`` serve-feed processes; yields (pid, feed port) of each, all stopped on the way out."""
    started: list[tuple[subprocess.Popen[bytes], int, int]] = []
    try:
        for i in range(count):
            port = PORT if spread == "reuse-port" else PORT + i
            operator = PORT + 1000 + i
            command = [sys.executable, "-m", "xmppbridge.cli", "serve-feed", "-c", str(config),
                       "--listen", f"{HOST}:{port}", "--operator-listen", f"{HOST}:{operator}",
                       *(["--reuse-port"] if spread == "reuse-port" else [])]
            with (logs / f"serve-feed-{i}.log").open("ab") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            started.append((process, port, operator))
        for process, _, operator in started:
            wait_up(process, operator)
        yield [(process.pid, port) for process, port, _ in started]
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_up(process: subprocess.Popen[bytes], operator: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve-feed exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{operator}/healthz", timeout=2) as response:
                if b'"feed"' in response.read():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("serve-feed did not come up")


async def _connection(port: int, request: bytes, until: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.monotonic() < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            if status != b"200":
                raise RuntimeError(f"{request.split(b' ')[1].decode()}: HTTP {status.decode()}")
            counts[0] += 1
    finally:
        writer.close()


async def load(ports: list[int], path: str, connections: int, seconds: float) -> float:
    """Requests per second over ``seconds`` from ``connections`` keep-alive connections, connection k
    to ``ports[k % len(ports)]``."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/atom+xml\r\n\r\n".encode()
    counts = [0]
    started = time.monotonic()
    await asyncio.gather(*(_connection(ports[k % len(ports)], request, started + seconds, counts)
                           for k in range(connections)))
    return counts[0] / (time.monotonic() - started)


def postgresql_config(config: Path, url: str) -> Path:
    """``config`` with its store moved to ``url``, beside it (its relative paths stay right)."""
    data = yaml.safe_load(config.read_text())
    data["store"] = {"url": url}
    moved = config.with_name(f"{config.stem}-postgresql.yaml")
    moved.write_text(yaml.safe_dump(data, sort_keys=False))
    return moved


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (PostgreSQL's postmaster: one backend per connection)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name, in parentheses, may hold spaces; the parent's pid is the 2nd field after it.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def measure(config: Path, count: int, spread: str, connections: int, seconds: float,
            logs: Path, postmaster: int | None) -> tuple[dict[str, float], dict[str, Budget], float]:
    """One run: per request, the rate and where the CPU went (``postmaster``: and PostgreSQL's, as
    ``postgres`` N); the processes' largest RSS."""
    rates: dict[str, float] = {}
    budgets: dict[str, Budget] = {}
    with feed_processes(config, count, spread, logs) as processes:
        ports = [port for _, port in processes]
        for name, path in REQUESTS.items():
            asyncio.run(load(ports, path, connections, 1.0))  # warm-up: page cache, store caches
            pids = {f"feed{i + 1}": pid for i, (pid, _) in enumerate(processes)}
            if postmaster is not None:  # after the warm-up: the pools hold their connections by then
                postgres = [postmaster, *children(postmaster)]
                pids |= {f"postgres {i + 1}": pid for i, pid in enumerate(postgres)}
            budget = budgets[name] = Budget(pids)
            budget.start()
            rates[name] = asyncio.run(load(ports, path, connections, seconds))
            budget.stop()
        rss = max(rss_mb(pid) for pid, _ in processes)
    return rates, budgets, rss


def server_cpu(budget: Budget, prefix: str) -> float:
    """Seconds on a core of the processes named ``prefix``... together: the feed processes, PostgreSQL."""
    return sum(use.cpu for who, use in budget.used.items() if who.startswith(prefix))


def cpu_summary(budget: Budget) -> str:
    """Each feed process, PostgreSQL's processes together, this process."""
    used = {who: (use.cpu, use.waited) for who, use in budget.used.items() if not who.startswith("postgres")}
    postgres = [use for who, use in budget.used.items() if who.startswith("postgres")]
    if postgres:
        used["postgres"] = (sum(use.cpu for use in postgres), sum(use.waited for use in postgres))
    return ", ".join(f"{who} {cpu:.1f}/{waited:.1f}" for who, (cpu, waited) in used.items())


Key = tuple[str, int]  # (backend, number of processes)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark 7: feed requests/s with 1, 2 and 4 processes.")
    parser.add_argument("entries", nargs="?", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per request, run and process count")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--spread", choices=("round-robin", "reuse-port"), default="round-robin")
    parser.add_argument("--store", choices=(*BACKENDS, "both"), default="sqlite",
                        help="the backend served, or both taking turns (default sqlite)")
    args = parser.parse_args()
    backends = BACKENDS if args.store == "both" else (args.store,)
    cache = os.environ.get("BENCH_FEED_STORE")
    with tempfile.TemporaryDirectory(prefix="bench-feedprocs-") as tmp, ExitStack() as stack:
        workdir = Path(cache) / str(args.entries) if cache else Path(tmp) / "lab"
        lab, db, generation = prepare(workdir, args.entries)
        configs, made = {"sqlite": lab["b"].config_path}, {"sqlite": generation}
        postmaster: int | None = None
        if "postgresql" in backends:
            url, made["postgresql"], cluster = stack.enter_context(
                postgresql_store(db, workdir / "postgresql" if cache else None))
            configs["postgresql"] = postgresql_config(lab["b"].config_path, url)
            postmaster = int((cluster / "data" / "postmaster.pid").read_text().split()[0])
        logs = Path(tmp)
        keys = [(backend, n) for backend in backends for n in PROCESSES]
        runs: dict[Key, list[dict[str, float]]] = {key: [] for key in keys}
        costs: dict[Key, list[dict[str, tuple[float, float]]]] = {key: [] for key in keys}  # CPU ms/request
        budgets: dict[Key, dict[str, Budget]] = {}
        rss: dict[Key, float] = {}
        for _ in range(RUNS):
            for key in keys:  # interleaved, so that the VM's drift hits every backend and count alike
                backend, n = key
                rates, budgets[key], rss[key] = measure(
                    configs[backend], n, args.spread, args.connections, args.seconds, logs,
                    postmaster if backend == "postgresql" else None)
                runs[key].append(rates)
                costs[key].append({name: tuple(server_cpu(budgets[key][name], who) * 1000
                                               / (rate * budgets[key][name].wall)
                                               for who in ("feed", "postgres"))
                                   for name, rate in rates.items()})
    print(f"Feed requests/s over {args.entries:,} entries; {args.spread}, {args.connections} keep-alive"
          f" connections, {args.seconds:.0f} s per run, median of {RUNS} runs (per run in brackets), on"
          f" {os.cpu_count()} cores")
    for backend in backends:
        print(f"{NAMES[backend]} store: {made[backend]}")
    for name in REQUESTS:
        rate = {key: statistics.median(r[name] for r in runs[key]) for key in keys}
        for backend in backends:
            pg = backend == "postgresql"
            rows = []
            for n in PROCESSES:
                values = ", ".join(f"{r[name]:.0f}" for r in runs[backend, n])
                feed_cost, pg_cost = (statistics.median(c[name][part] for c in costs[backend, n])
                                      for part in (0, 1))
                rows.append([str(n), f"{rate[backend, n]:.0f}", f"[{values}]",
                             f"{rate[backend, n] / rate[backend, 1]:.2f}", f"{feed_cost:.2f}",
                             *([f"{pg_cost:.2f}"] if pg else []), f"{rss[backend, n]:.0f}"])
            header = ["processes", "req/s", "runs", "ratio to 1", "feed CPU ms/req",
                      *(["PostgreSQL CPU ms/req"] if pg else []), "max RSS MB"]
            print(f"\n{name}, {NAMES[backend]}\n" + table(rows, header))
        if len(backends) > 1:
            ratios = ", ".join(f"{n}: {rate['postgresql', n] / rate['sqlite', n]:.2f}" for n in PROCESSES)
            print(f"req/s PostgreSQL / SQLite, by processes: {ratios}")
    print("\nCPU in the last run, seconds on a core / seconds runnable but waiting for one (bench.cpu):")
    for name in REQUESTS:
        print(f"  {name}:")
        for backend, n in keys:
            budget = budgets[backend, n][name]
            # Whatever else the machine ran meanwhile (the kernel, other programs): busy time not ours.
            busy = (1 - budget.idle) * budget.wall * (os.cpu_count() or 1)
            others = busy - sum(use.cpu for use in budget.used.values())
            print(f"    {NAMES[backend]}, {n} process(es), {budget.wall:.1f} s: {cpu_summary(budget)};"
                  f" everything else {others:.1f}; machine idle {budget.idle:.0%}")


if __name__ == "__main__":
    main()
