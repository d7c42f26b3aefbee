"""Benchmark 4: the feed over many mirrored entries.

Four real entries are mirrored through ``Store.upsert_entry`` (one per restriction, signed documents);
the rest are bulk copies of them (entry row and document) with their own item id, IncidentID, title,
times, change-log row and full-text row, so every table the feed reads (entries, documents, changes,
entries_fts) stays consistent. The feed app (``make_app``, no publisher, anonymous readers see every
collection) runs in a child process on 127.0.9.3; this process times HTTP requests and reads the
child's resident memory.

    python3 bench/bench_feed.py [ENTRIES] [--cold]        # default 1,000,000

A deep page reads entry rows from anywhere in the store file, so its time depends on what the page
cache holds. ``--cold`` makes that reproducible: it measures twice, warm (the store file read into the
page cache first) and cold (the store file evicted from the page cache before each request, so each
request reads from disk whatever the feed process's own SQLite cache does not hold), and prints a
table for each.

Generating 1,000,000 entries takes minutes and 5 GB, so ``BENCH_FEED_STORE=DIR`` keeps the generated
consortium (configs, keys, store) in ``DIR/ENTRIES`` (the benchmark's own; it deletes an unfinished one)
and reuses it on later runs, regenerating it when missing or unfinished. The feed upgrades an older
cached store's schema in place when it first opens it, before any request is timed (from version 4 to 5,
90-100 s for a million entries, and the file grows from 4.5 to 9 GB, half of it free pages).

    BENCH_FEED_STORE=/var/tmp/bench-feed python3 bench/bench_feed.py
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RUNS, table  # noqa: E402
from bench.lab import IPS, RESTRICTIONS, BenchConsortium, document  # noqa: E402
from xmppbridge.store.db import format_time  # noqa: E402
from xmppbridge.store.items import SignedItem, Signer

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
                store.upsert_entry(
                    "pubsub.a.test",
                    SignedItem(
                        item.node,
                        item.item_id,
                        item.payload,
                        item.incident,
                        item.version,
                        Signer(publisher.identity.subject, publisher.identity.fingerprint),
                    ),
                    origin="remote",
                )
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    templates = [dict(row) for row in conn.execute("SELECT * FROM entries ORDER BY id")]
    documents = [row["xml"] for row in conn.execute("SELECT xml FROM documents ORDER BY entry_id")]
    columns = [c for c in templates[0] if c != "id"]
    insert = f"INSERT INTO entries ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / total
    rng = random.Random(7)
    conn.execute("BEGIN")
    rows, docs, fts = [], [], []
    for n in range(len(templates), total):
        row = dict(templates[n % 4])
        when = format_time(start + step * n)
        row.update(item_id=f"bulk-{n:07d}", incident_id=f"BULK-{n:07d}", title=f"Scanning incident {n}",
                   generation_time=when, report_time=when, published_at=when, received_at=when,
                   updated_at=when)
        rows.append([row[c] for c in columns])
        docs.append(documents[n % 4])
        fts.append(f"Scanning from 198.51.100.{n % 250} {rng.choice(WORDS)} against the web farm")
        if len(rows) == BATCH or n == total - 1:
            first = conn.execute("SELECT max(id) FROM entries").fetchone()[0] + 1
            conn.executemany(insert, rows)
            conn.executemany("INSERT INTO documents (entry_id, xml) VALUES (?, ?)",
                             list(enumerate(docs, first)))
            conn.executemany("INSERT INTO entries_fts (rowid, description) VALUES (?, ?)",
                             list(enumerate(fts, first)))
            rows, docs, fts = [], [], []
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


def store_files(db: Path) -> list[Path]:
    return [path for path in (db, db.with_name(db.name + "-wal")) if path.exists()]


def read_into_cache(db: Path) -> None:
    for path in store_files(db):
        with path.open("rb") as file:
            while file.read(1 << 24):
                pass


def evict_from_cache(db: Path) -> None:
    """Drop the store's pages from the page cache. DONTNEED drops clean pages without root; the store
    is only read here, so all of its pages are clean."""
    for path in store_files(db):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


Results = dict[str, list[tuple[float, float]]]  # query -> (median, max) seconds per run


def measure(queries: dict[str, Callable[[], str]], before_request: Callable[[], None]) -> Results:
    results: Results = {name: [] for name in queries}
    for _ in range(RUNS):
        for name, url in queries.items():
            times = []
            for _ in range(REQUESTS):
                before_request()
                times.append(timed_get(url()))
            results[name].append((statistics.median(times), max(times)))
    return results


def report(results: Results) -> str:
    rows = []
    for name, runs in results.items():
        median = statistics.median(r[0] for r in runs)
        target = 0.010 if name.startswith("page") else 0.050
        rows.append([name, f"{median * 1000:.1f}", f"[{', '.join(f'{r[0] * 1000:.1f}' for r in runs)}]",
                     f"{statistics.median(r[1] for r in runs) * 1000:.1f}", f"{target * 1000:.0f}",
                     f"{median / target:.2f}", "met" if median < target else "missed"])
    return table(rows, ["request", "median ms", "runs", "max ms", "target ms", "ratio", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark 4: the feed over many mirrored entries.")
    parser.add_argument("entries", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--cold", action="store_true",
                        help="measure warm (store file cached) and cold (evicted before each request)")
    args = parser.parse_args()
    total = args.entries
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
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(lab["b"].config_path), str(db)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "READY"
            size = os.path.getsize(db) / 2**20  # after the feed opened it: any schema upgrade is done
            rss_idle = rss_mb(child.pid)
            if args.cold:
                read_into_cache(db)
                passes = {"warm: store file read into the page cache first": measure(queries, lambda: None),
                          "cold: store file evicted from the page cache before each request":
                              measure(queries, lambda: evict_from_cache(db))}
            else:
                passes = {"": measure(queries, lambda: None)}
            rss_after = rss_mb(child.pid)
        finally:
            child.kill()
            child.wait()
    print(f"Feed over {total:,} mirrored entries (store {size:.0f} MB, {generation}); "
          f"{REQUESTS} requests per query per run, median of {RUNS} runs")
    for label, results in passes.items():
        print(f"{label}\n{report(results)}" if label else report(results))
    print(f"feed server RSS: {rss_idle:.0f} MB at start, {rss_after:.0f} MB after the requests "
          "(target < 200 MB)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
