"""Benchmark 4: the feed over many mirrored entries.

Four real entries are mirrored through ``Store.upsert_entry`` (one per restriction, signed documents);
the rest are bulk copies of them with their own item id, IncidentID, title, times, change-log row and
full-text row, so every table the feed reads (entries, changes, entries_fts) stays consistent. The feed
app (``make_app``, no publisher, anonymous readers see every collection) runs in a child process on
127.0.9.3; this process times HTTP requests and reads the child's resident memory.

    python3 bench/bench_feed.py [ENTRIES]        # default 1,000,000

Generating 1,000,000 entries takes minutes and 4.4 GB, so ``BENCH_FEED_STORE=DIR`` keeps the generated
consortium (configs, keys, store) in ``DIR/ENTRIES`` (the benchmark's own; it deletes an unfinished one)
and reuses it on later runs, regenerating it when missing or unfinished. The feed upgrades an older
cached store's schema in place when it first opens it, before any request is timed.

    BENCH_FEED_STORE=/var/tmp/bench-feed python3 bench/bench_feed.py
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RUNS, table  # noqa: E402
from bench.lab import IPS, RESTRICTIONS, BenchConsortium, document  # noqa: E402
from xmppbridge.store.db import format_time  # noqa: E402

PORT = 29091
REQUESTS = 30  # per run and query
WORDS = [f"word{i:03d}" for i in range(1000)]  # word{k} is in 1 of 1000 entries; "scanning" is in all
BATCH = 20_000


def generate(lab: BenchConsortium, total: int) -> Path:
    """A store with ``total`` live mirrored entries, spread over 2026, 4 collections."""
    db = lab.db_path("b")
    with lab.store("b") as store:
        publisher = lab.publisher(store)
        for n, restriction in enumerate(RESTRICTIONS):
            for item in publisher.prepare(document(f"TEMPLATE-{n}", restriction)):
                store.upsert_entry(service="pubsub.a.test", node=item.node, item_id=item.item_id,
                                   origin="remote", incident=item.incident, version=item.version,
                                   xml=item.payload, signer_subject=publisher.identity.subject,
                                   signer_fingerprint=publisher.identity.fingerprint)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    templates = [dict(row) for row in conn.execute("SELECT * FROM entries ORDER BY id")]
    columns = [c for c in templates[0] if c != "id"]
    insert = f"INSERT INTO entries ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / total
    rng = random.Random(7)
    conn.execute("BEGIN")
    rows, fts = [], []
    for n in range(len(templates), total):
        row = dict(templates[n % 4])
        when = format_time(start + step * n)
        row.update(item_id=f"bulk-{n:07d}", incident_id=f"BULK-{n:07d}", title=f"Scanning incident {n}",
                   generation_time=when, report_time=when, published_at=when, received_at=when,
                   updated_at=when)
        rows.append([row[c] for c in columns])
        fts.append(f"Scanning from 198.51.100.{n % 250} {rng.choice(WORDS)} against the web farm")
        if len(rows) == BATCH or n == total - 1:
            first = conn.execute("SELECT max(id) FROM entries").fetchone()[0] + 1
            conn.executemany(insert, rows)
            conn.executemany("INSERT INTO entries_fts (rowid, description) VALUES (?, ?)",
                             list(enumerate(fts, first)))
            rows, fts = [], []
    # The change log: one current row per entry, sequence numbers per collection in entry order.
    conn.execute("DELETE FROM changes")
    conn.execute(
        "INSERT INTO changes (collection, seq, entry_id, revision, purpose, deleted, changed_at, current)"
        " SELECT effective_restriction, row_number() OVER (PARTITION BY effective_restriction ORDER BY id),"
        " id, revision, purpose_key, 0, updated_at, 1 FROM entries")
    conn.execute("COMMIT")
    conn.close()
    return db


def prepare(workdir: Path, total: int) -> tuple[BenchConsortium, Path, str]:
    """The lab in ``workdir``, its store generated unless a finished one is already there."""
    # Member a only provides the signing key of the four real entries; b's store and feed are measured.
    lab = BenchConsortium(workdir, IPS, feed_port_base=PORT - 1)
    done = workdir / "generated"
    if done.exists():
        return lab, lab.db_path("b"), f"reused from {workdir}, generated in {done.read_text().strip()} s"
    shutil.rmtree(workdir, ignore_errors=True)  # an unfinished earlier attempt
    workdir.mkdir(parents=True)
    lab.write_files(subscriptions={"a": [], "b": []}, anonymous_restrictions=list(RESTRICTIONS))
    started = time.perf_counter()
    db = generate(lab, total)
    seconds = f"{time.perf_counter() - started:.0f}"
    done.write_text(seconds + "\n")
    return lab, db, f"generated in {seconds} s"


def serve(config_path: str, db: str) -> None:
    """Child process: the feed app alone, until killed."""
    from aiohttp import web

    from xmppbridge.config import load_config
    from xmppbridge.feed.app import make_app
    from xmppbridge.store import Store

    async def run() -> None:
        config = load_config(config_path)
        runner = web.AppRunner(make_app(Store(db), config.feed, health=lambda: {"ready": True}))
        await runner.setup()
        await web.TCPSite(runner, IPS["b"], PORT).start()
        print("READY", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        assert response.status == 200, url
    return time.perf_counter() - start


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    base = f"http://{IPS['b']}:{PORT}"
    rng = random.Random(1)
    queries = {
        "page of 50 (newest, need-to-know)": lambda: f"{base}/feeds/need-to-know?count=50",
        "page of 50 (deep, before=seq)": lambda: (
            f"{base}/feeds/partner?count=50&before={rng.randint(1000, total // 4)}"),
        "category + time search": lambda: (
            f"{base}/search?category=partner&reporttime=2026-{rng.randint(1, 11):02d}-01/2026-{12:02d}-01"),
        "text search, rare word (1/1000)": lambda: f"{base}/search?q={rng.choice(WORDS)}",
        "text search, word in every entry": lambda: f"{base}/search?q=scanning",
    }
    cache = os.environ.get("BENCH_FEED_STORE")
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        workdir = Path(cache) / str(total) if cache else Path(tmp)
        lab, db, generation = prepare(workdir, total)
        size = os.path.getsize(db) / 2**20
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(lab["b"].config_path), str(db)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "READY"
            rss_idle = rss_mb(child.pid)
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in queries}
            for _ in range(RUNS):
                for name, url in queries.items():
                    times = [timed_get(url()) for _ in range(REQUESTS)]
                    results[name].append((statistics.median(times), max(times)))
            rss_after = rss_mb(child.pid)
        finally:
            child.kill()
            child.wait()
    print(f"Feed over {total:,} mirrored entries (store {size:.0f} MB, {generation}); "
          f"{REQUESTS} requests per query per run, median of {RUNS} runs")
    rows = []
    for name, runs in results.items():
        median = statistics.median(r[0] for r in runs)
        target = 0.010 if name.startswith("page") else 0.050
        rows.append([name, f"{median * 1000:.1f}", f"[{', '.join(f'{r[0] * 1000:.1f}' for r in runs)}]",
                     f"{statistics.median(r[1] for r in runs) * 1000:.1f}", f"{target * 1000:.0f}",
                     f"{median / target:.2f}", "met" if median < target else "missed"])
    print(table(rows, ["request", "median ms", "runs", "max ms", "target ms", "ratio", ""]))
    print(f"feed server RSS: {rss_idle:.0f} MB at start, {rss_after:.0f} MB after the requests "
          "(target < 200 MB)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
