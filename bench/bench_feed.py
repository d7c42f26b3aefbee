"""Benchmark 4: the feed over many mirrored entries.

Four real entries are mirrored through ``Store.upsert_entry`` (one per restriction, signed documents);
the rest are bulk copies of them (entry row and document) with their own item id, IncidentID, title,
times, change-log row, full-text row, indicator index rows (their template's indicators, their own
incident's UUID) and STIX object index rows, so every table the feed reads (entries, documents, changes,
entries_fts, entry_indicators, entry_uuids, entry_indicator_lists, entry_objects) stays consistent. The
feed app (``make_app``, no publisher, anonymous readers see every collection) runs in a child process on
127.0.9.3; this process times HTTP requests and reads the child's resident memory.

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

``--store postgresql`` measures the same store on PostgreSQL instead, ``--store both`` both side by side
in one run (runs alternating between them) with the ratio PostgreSQL / SQLite. The PostgreSQL store is
the SQLite one copied with ``xmppbridge store copy``'s code (``store.copy``: same ids, so the same pages)
into a database of a private cluster (``tests/postgres.py``: Debian's PostgreSQL 15, default settings
but fsync off) on 127.0.0.182:31432, then vacuumed and analysed, as autovacuum would after such a load.
With ``BENCH_FEED_STORE`` the cluster is kept in ``DIR/ENTRIES/postgresql`` and reused, stopped between
runs. Both feeds are warm: every store file (the SQLite file, the cluster's data directory) is read into
the page cache before the requests, and ``--cold`` is for SQLite only (PostgreSQL's own buffers cannot
be evicted from outside).
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RUNS, table  # noqa: E402
from bench.lab import IPS, RESTRICTIONS, BenchConsortium, document  # noqa: E402
from tests.postgres import private_cluster  # noqa: E402
from xmppbridge.iodef.uuids import incident_uuid  # noqa: E402
from xmppbridge.store import Store, objectindex  # noqa: E402
from xmppbridge.store.copy import copy_store  # noqa: E402
from xmppbridge.store.db import format_time  # noqa: E402
from xmppbridge.store.indicatorindex import from_json  # noqa: E402

PORT = 29091  # the SQLite store's feed; the PostgreSQL store's is PORT + 1
PG_HOST, PG_PORT = "127.0.0.182", 31432
BACKENDS = ("sqlite", "postgresql")
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
REQUESTS = 30  # per run and query
WORDS = [f"word{i:03d}" for i in range(1000)]  # word{k} is in 1 of 1000 entries; "scanning" is in all
BATCH = 20_000


Template = Callable[[str, str], bytes]  # (IncidentID, restriction) -> an IODEF document


def generate(lab: BenchConsortium, total: int, template: Template = document) -> Path:
    """A store with ``total`` live mirrored entries, spread over 2026, 4 collections, each entry's document
    a copy of the ``template`` of its collection."""
    db = lab.db_path("b")
    with lab.store("b") as store:
        publisher = lab.publisher(store)
        for n, restriction in enumerate(RESTRICTIONS):
            for item in publisher.prepare(template(f"TEMPLATE-{n}", restriction)):  # signed, signer named
                store.upsert_entry("pubsub.a.test", item, origin="remote")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    templates = [dict(row) for row in conn.execute("SELECT * FROM entries ORDER BY id")]
    documents = [row["xml"] for row in conn.execute("SELECT xml FROM documents ORDER BY entry_id")]
    # The indicator index (store.indicatorindex) of a copy is its template's, with its own incident's UUID.
    indicators = [conn.execute("SELECT kind, value, low, high FROM entry_indicators WHERE entry_id = ?",
                               (row["id"],)).fetchall() for row in templates]
    lists = [conn.execute("SELECT indicators FROM entry_indicator_lists WHERE entry_id = ?",
                          (row["id"],)).fetchone()[0] for row in templates]
    parsed = [from_json(text) for text in lists]
    columns = [c for c in templates[0] if c != "id"]
    insert = f"INSERT INTO entries ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / total
    rng = random.Random(7)
    conn.execute("BEGIN")
    rows, docs, fts, uuids, found, objects = [], [], [], [], [], []
    for n in range(len(templates), total):
        row = dict(templates[n % 4])
        when = format_time(start + step * n)
        row.update(item_id=f"bulk-{n:07d}", incident_id=f"BULK-{n:07d}", title=f"Scanning incident {n}",
                   generation_time=when, report_time=when, published_at=when, received_at=when,
                   updated_at=when)
        rows.append([row[c] for c in columns])
        docs.append(documents[n % 4])
        fts.append(f"Scanning from 198.51.100.{n % 250} {rng.choice(WORDS)} against the web farm")
        uuids.append(str(incident_uuid(row["id_name"], row["incident_id"])))
        found.append(indicators[n % 4])
        objects.append(objectindex.keys(row["id_name"], row["incident_id"], parsed[n % 4],
                                        row["effective_restriction"]))
        if len(rows) == BATCH or n == total - 1:
            first = conn.execute("SELECT max(id) FROM entries").fetchone()[0] + 1
            conn.executemany(insert, rows)
            conn.executemany("INSERT INTO documents (entry_id, xml) VALUES (?, ?)",
                             list(enumerate(docs, first)))
            conn.executemany("INSERT INTO entries_fts (rowid, description) VALUES (?, ?)",
                             list(enumerate(fts, first)))
            conn.executemany("INSERT INTO entry_uuids (uuid, entry_id) VALUES (?, ?)",
                             [(uuid, entry_id) for entry_id, uuid in enumerate(uuids, first)])
            conn.executemany("INSERT INTO entry_indicators (entry_id, kind, value, low, high)"
                             " VALUES (?, ?, ?, ?, ?)",
                             [(entry_id, *i) for entry_id, its in enumerate(found, first) for i in its])
            conn.executemany("INSERT INTO entry_indicator_lists (entry_id, indicators) VALUES (?, ?)",
                             [(i, lists[(i - 1) % 4]) for i in range(first, first + len(rows))])
            conn.executemany("INSERT INTO entry_objects (key, entry_id) VALUES (?, ?)",
                             [(key, entry_id) for entry_id, keys in enumerate(objects, first)
                              for key in keys])
            rows, docs, fts, uuids, found, objects = [], [], [], [], [], []
    # The change log: one current row per entry, sequence numbers per collection in entry order.
    conn.execute("DELETE FROM changes")
    conn.execute(
        "INSERT INTO changes (collection, seq, entry_id, revision, purpose, deleted, changed_at, current)"
        " SELECT effective_restriction, row_number() OVER (PARTITION BY effective_restriction ORDER BY id),"
        " id, revision, purpose_key, 0, updated_at, 1 FROM entries")
    conn.execute("COMMIT")
    conn.close()
    return db


def prepare(workdir: Path, total: int, template: Template = document) -> tuple[BenchConsortium, Path, str]:
    """The lab in ``workdir``, its store generated (from ``template``) unless a finished one is already
    there."""
    # Member a only provides the signing key of the four real entries; b's store and feed are measured.
    lab = BenchConsortium(workdir, IPS, feed_port_base=PORT - 1)
    done = workdir / "generated"
    if done.exists():
        return lab, lab.db_path("b"), f"reused from {workdir}, generated in {done.read_text().strip()} s"
    shutil.rmtree(workdir, ignore_errors=True)  # an unfinished earlier attempt
    workdir.mkdir(parents=True)
    lab.write_files(subscriptions={"a": [], "b": []}, anonymous_restrictions=list(RESTRICTIONS))
    started = time.perf_counter()
    db = generate(lab, total, template)
    seconds = f"{time.perf_counter() - started:.0f}"
    done.write_text(seconds + "\n")
    return lab, db, f"generated in {seconds} s"


@contextmanager
def postgresql_store(db: Path, keep: Path | None, host: str = PG_HOST,
                     port: int = PG_PORT) -> Iterator[tuple[str, str, Path]]:
    """The store ``db`` copied into PostgreSQL, in a private cluster on ``host:port`` running until the
    block ends, kept in ``keep`` when given (copied once, then reused); its URL, how it was made and the
    cluster's directory."""
    with private_cluster(port, host, keep=keep) as cluster:
        url = cluster.database_url("feed")
        done = cluster.directory / "copied"
        if done.exists():
            yield url, f"reused, copied in {done.read_text().strip()} s", cluster.directory
            return
        cluster.drop_database("feed")  # an unfinished earlier copy
        cluster.create_database("feed")
        started = time.perf_counter()
        with Store(db) as source, Store(url) as target:
            copied = copy_store(source, target)
            mismatched = [c.table for c in copied if not c.ok]
            assert not mismatched, f"store copy: row counts differ in {mismatched}"
        copied_at = time.perf_counter()
        # What autovacuum does after a load this size, done before timing. Outside a transaction, which
        # Store.sql would open.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        seconds = (f"{copied_at - started:.0f} s, vacuumed and analysed in"
                   f" {time.perf_counter() - copied_at:.0f}")
        done.write_text(seconds + "\n")
        yield url, f"copied in {seconds} s", cluster.directory


def cluster_files(directory: Path) -> list[Path]:
    """A cluster's table and index files, to read into the page cache."""
    return [path for path in (directory / "data" / "base").rglob("*") if path.is_file()]


def size_mb(target: str) -> float:
    if target.startswith("postgresql://"):
        with Store(target) as store:
            return store.sql("SELECT pg_database_size(current_database())")[0][0] / 2**20
    return os.path.getsize(target) / 2**20


def serve(config_path: str, db: str, port: int) -> None:
    """Child process: the feed app alone over store ``db`` (a file or a URL), until killed."""
    from aiohttp import web

    from xmppbridge.config.settings import load_config
    from xmppbridge.feed.app import make_app

    async def run() -> None:
        config = load_config(config_path)
        runner = web.AppRunner(make_app(Store(db), config.feed, health=lambda: {"ready": True}))
        await runner.setup()
        await web.TCPSite(runner, IPS["b"], port).start()
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


def read_into_cache(paths: list[Path]) -> None:
    for path in paths:
        if not path.exists():  # an empty WAL that SQLite removed when the last connection closed
            continue
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
Queries = dict[str, Callable[[], str]]  # query -> the URL of its next request


def queries(base: str, total: int) -> Queries:
    """The timed requests; each backend gets its own generator with one seed, so the same requests."""
    rng = random.Random(1)
    return {
        "page of 50 (newest, need-to-know)": lambda: f"{base}/feeds/need-to-know?count=50",
        "page of 50 (deep, before=seq)": lambda: (
            f"{base}/feeds/partner?count=50&before={rng.randint(1000, total // 4)}"),
        "category + time search": lambda: (
            f"{base}/search?category=partner&reporttime=2026-{rng.randint(1, 11):02d}-01/2026-{12:02d}-01"),
        "text search, rare word (1/1000)": lambda: f"{base}/search?q={rng.choice(WORDS)}",
        "text search, word in every entry": lambda: f"{base}/search?q=scanning",
    }


def measure(feeds: dict[str, Queries], before_request: Callable[[], None]) -> dict[str, Results]:
    """Per feed (backend), per query, ``RUNS`` runs of ``REQUESTS`` requests; the feeds take turns run by
    run, so that the VM's drift hits them alike."""
    results: dict[str, Results] = {feed: {name: [] for name in urls} for feed, urls in feeds.items()}
    for _ in range(RUNS):
        for feed, urls in feeds.items():
            for name, url in urls.items():
                times = []
                for _ in range(REQUESTS):
                    before_request()
                    times.append(timed_get(url()))
                results[feed][name].append((statistics.median(times), max(times)))
    return results


def target_of(name: str) -> float:
    return 0.010 if name.startswith("page") else 0.050


def median_of(runs: list[tuple[float, float]]) -> float:
    return statistics.median(r[0] for r in runs)


def report(results: Results) -> str:
    rows = []
    for name, runs in results.items():
        median, target = median_of(runs), target_of(name)
        rows.append([name, f"{median * 1000:.1f}", f"[{', '.join(f'{r[0] * 1000:.1f}' for r in runs)}]",
                     f"{statistics.median(r[1] for r in runs) * 1000:.1f}", f"{target * 1000:.0f}",
                     f"{median / target:.2f}", "met" if median < target else "missed"])
    return table(rows, ["request", "median ms", "runs", "max ms", "target ms", "ratio", ""])


def compare(sqlite: Results, postgresql: Results) -> str:
    """PostgreSQL beside SQLite, medians of the runs (ms), and their ratio."""
    rows = []
    for name, runs in postgresql.items():
        pg, lite = median_of(runs), median_of(sqlite[name])
        rows.append([name, f"{lite * 1000:.1f}", f"{pg * 1000:.1f}", f"{pg / lite:.2f}",
                     "met" if pg < target_of(name) else "missed"])
    return table(rows, ["request", "SQLite ms", "PostgreSQL ms", "PostgreSQL / SQLite",
                        "target on PostgreSQL"])


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark 4: the feed over many mirrored entries.")
    parser.add_argument("entries", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--cold", action="store_true",
                        help="measure warm (store file cached) and cold (evicted before each request);"
                             " SQLite only")
    parser.add_argument("--store", choices=(*BACKENDS, "both"), default="sqlite",
                        help="the backend measured, or both side by side (default sqlite)")
    args = parser.parse_args()
    backends = BACKENDS if args.store == "both" else (args.store,)
    if args.cold and "postgresql" in backends:
        parser.error("--cold is for the SQLite store only")
    total = args.entries
    cache = os.environ.get("BENCH_FEED_STORE")
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp, ExitStack() as stack:
        workdir = Path(cache) / str(total) if cache else Path(tmp)
        lab, db, generation = prepare(workdir, total)
        targets, made = {"sqlite": str(db)}, {"sqlite": generation}
        files = store_files(db) if "sqlite" in backends else []
        if "postgresql" in backends:
            # Kept beside the SQLite store it is a copy of (regenerated with it), not in a temporary
            # directory, which the cluster's owner could not enter.
            targets["postgresql"], made["postgresql"], cluster = stack.enter_context(
                postgresql_store(db, workdir / "postgresql" if cache else None))
            files += cluster_files(cluster)
        children: dict[str, subprocess.Popen[str]] = {}
        try:
            for n, backend in enumerate(backends):
                children[backend] = subprocess.Popen(
                    [sys.executable, __file__, "--serve", str(lab["b"].config_path), targets[backend],
                     str(PORT + n)], stdout=subprocess.PIPE, text=True)
            feeds = {}
            for n, backend in enumerate(backends):
                child = children[backend]
                assert child.stdout is not None and child.stdout.readline().strip() == "READY"
                feeds[backend] = queries(f"http://{IPS['b']}:{PORT + n}", total)
            sizes = {backend: size_mb(targets[backend]) for backend in backends}  # any schema upgrade done
            rss_idle = {backend: rss_mb(child.pid) for backend, child in children.items()}
            read_into_cache(files)
            if args.cold:
                passes = {"warm: store file read into the page cache first": measure(feeds, lambda: None),
                          "cold: store file evicted from the page cache before each request":
                              measure(feeds, lambda: evict_from_cache(db))}
            else:
                passes = {"": measure(feeds, lambda: None)}
            rss_after = {backend: rss_mb(child.pid) for backend, child in children.items()}
        finally:
            for child in children.values():
                child.kill()
                child.wait()
    print(f"Feed over {total:,} mirrored entries; {REQUESTS} requests per query per run, median of {RUNS}"
          " runs" + (", the backends taking turns run by run" if len(backends) > 1 else ""))
    for backend in backends:
        print(f"{NAMES[backend]} store: {sizes[backend]:.0f} MB, {made[backend]}")
    for label, results in passes.items():
        for backend in backends:
            heading = ", ".join(part for part in (NAMES[backend] if len(backends) > 1 else "", label) if part)
            print(f"{heading}\n{report(results[backend])}" if heading else report(results[backend]))
        if len(backends) > 1:
            print(f"PostgreSQL beside SQLite, same run\n{compare(results['sqlite'], results['postgresql'])}")
    for backend in backends:
        print(f"{NAMES[backend]} feed server RSS: {rss_idle[backend]:.0f} MB at start, "
              f"{rss_after[backend]:.0f} MB after the requests (target < 200 MB)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
