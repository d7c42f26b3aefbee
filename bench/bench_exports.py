"""Benchmark 4b: the analysts' exports (STIX 2.1, TAXII 2.1, MISP feed, indicator CSV) over the feed
benchmark's store of many mirrored entries.

The store is built by benchmark 4's builder (``bench_feed.prepare``: four signed entries through
``Store.upsert_entry``, the rest bulk copies of them), with one difference: its four template documents
carry indicators (``document`` below: ten, one of each kind the bridge extracts, as a real report does),
because every export renders the indicators of each entry it holds, and benchmark 4's documents have
none. The feed app runs in a child process (``bench_feed.serve``); this process times HTTP requests, as
an anonymous reader allowed every collection, and reads the child's resident memory (its peak, VmHWM,
is what the 200 MB target is about).

    python3 bench/bench_exports.py [ENTRIES] [--store sqlite|postgresql|both] [--before TREE]

``--before TREE`` serves the same store from a second source tree too (another working copy, e.g. the
main branch before a change), the two feeds taking turns run by run, and prints the ratio of this
tree's medians to that one's: a before/after in one run, on the same store and the same requests.

``BENCH_FEED_STORE=DIR`` keeps the generated store in ``DIR/exports-ENTRIES`` (and its PostgreSQL copy,
``bench_feed.postgresql_store``, beside it) and reuses it. Members are on ``XMPPBRIDGE_BENCH_NET``.3
(``bench/lab.py``), feeds on 29191+, the PostgreSQL cluster on 127.0.0.183:31532.

Every timed request is a page of 50 (entries, or TAXII objects) but the MISP feed's manifest.json and
hashes.csv, which have no paging: they are the newest ``downloads.MISP_WINDOW`` entries.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_feed import (  # noqa: E402
    BACKENDS,
    NAMES,
    WORDS,
    cluster_files,
    postgresql_store,
    prepare,
    read_into_cache,
    store_files,
)
from bench.common import RUNS, table  # noqa: E402
from bench.lab import IPS, percentile  # noqa: E402
from xmppbridge.feed.downloads import MISP_WINDOW  # noqa: E402
from xmppbridge.feed.taxii import collection_id  # noqa: E402
from xmppbridge.iodef.uuids import incident_uuid  # noqa: E402

PORT = 29191
PG_HOST, PG_PORT = "127.0.0.183", 31532
REQUESTS = 30  # per run and request kind; fewer for the MISP windows (below)
TARGET = 0.050  # p50 of a page of 50
RSS_TARGET_MB = 200
TAXII = "application/taxii+json;version=2.1"


def document(incident_id: str, restriction: str) -> bytes:
    """A valid IODEF 2.0 document with ten indicators: a source System (domain, IPv4 and IPv6 address,
    a port) and a target network, expectations, and observables (a URL, a file hash, e-mail addresses),
    as ``tests/data/iodef/iodef2-indicators.xml`` has them. The values differ per template."""
    k = 10 + len(restriction)
    digest = base64.b64encode(hashlib.sha256(restriction.encode()).digest()).decode()
    return f"""<IODEF-Document version="2.00" xml:lang="en" xmlns="urn:ietf:params:xml:ns:iodef-2.0"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <Incident purpose="mitigation" restriction="{restriction}">
    <IncidentID name="csirt.a.test">{incident_id}</IncidentID>
    <GenerationTime>2026-11-20T08:30:00Z</GenerationTime>
    <Description>Scanning and a dropper from 198.51.100.{k} (export benchmark)</Description>
    <Contact role="creator" type="organization"><Email><EmailTo>csirt@a.test</EmailTo></Email></Contact>
    <EventData>
      <Flow>
        <System category="source">
          <Node>
            <DomainData><Name>scanner{k}.example.net</Name></DomainData>
            <Address category="ipv4-addr">198.51.100.{k}</Address>
            <Address category="ipv6-addr">2001:db8::{k}</Address>
          </Node>
          <Service ip-protocol="6"><Port>22</Port></Service>
        </System>
        <System category="target">
          <Node><Address category="ipv4-net">192.0.2.0/24</Address></Node>
        </System>
      </Flow>
      <Expectation action="block-host"/>
    </EventData>
    <IndicatorData>
      <Indicator>
        <IndicatorID name="csirt.a.test" version="1">IND-{k}</IndicatorID>
        <Observable>
          <FileData><File>
            <URL>http://drop{k}.example.net/invoice.pdf.exe</URL>
            <HashData scope="file-contents"><Hash>
              <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
              <ds:DigestValue>{digest}</ds:DigestValue>
            </Hash></HashData>
          </File></FileData>
        </Observable>
      </Indicator>
      <Indicator>
        <IndicatorID name="csirt.a.test" version="1">IND-{k + 1}</IndicatorID>
        <Observable>
          <EmailData><EmailTo>victim{k}@example.org</EmailTo><EmailFrom>billing@phish{k}.example.com</EmailFrom>
          </EmailData>
        </Observable>
      </Indicator>
    </IndicatorData>
  </Incident>
</IODEF-Document>""".encode()


Request = tuple[str, dict[str, str]]  # URL, headers
Queries = dict[str, Callable[[], Request]]  # request kind -> its next request
# Requests per run of the kinds that are not pages of 50 (the MISP windows), which take much longer.
FEWER = {"MISP manifest.json (window)": 5, "MISP hashes.csv (window)": 3,
         "MISP manifest.json (If-None-Match, 304)": 5}
CONTROLS = ("Atom page of 50 (newest), control", "Atom search, category + time, control")


def queries(base: str, total: int) -> Queries:
    """The timed requests; each feed gets its own generator with one seed, so the same requests."""
    rng = random.Random(1)
    taxii = {r: f"{base}/taxii2/api/collections/{collection_id(r)}/" for r in ("partner", "need-to-know")}
    start, step = datetime(2026, 1, 1, tzinfo=UTC), timedelta(days=365) / total  # as bench_feed made them
    plain: dict[str, str] = {}
    accept = {"Accept": TAXII}
    etag = _etag_of(f"{base}/misp/manifest.json", plain)

    def deep_seq() -> int:  # a collection holds a quarter of the entries
        return rng.randint(total // 400 + 2, total // 4)

    def deep_time() -> str:
        when = start + step * rng.randint(total // 100, total - total // 100)
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    newest = (start + step * (total - 200)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the last 50 of a collection
    return {
        "collection stix.json (newest)": lambda: (f"{base}/feeds/need-to-know/stix.json?count=50", plain),
        "collection stix.json (deep, before=seq)": lambda: (
            f"{base}/feeds/partner/stix.json?count=50&before={deep_seq()}", plain),
        "search stix.json (category + time)": lambda: (
            f"{base}/search/stix.json?count=50&category=partner"
            f"&reporttime=2026-{rng.randint(1, 11):02d}-01/2026-12-01", plain),
        "TAXII objects (first page)": lambda: (f"{taxii['partner']}objects/?limit=50", accept),
        "TAXII objects (newest, added_after)": lambda: (
            f"{taxii['need-to-know']}objects/?limit=50&added_after={newest}", accept),
        "TAXII objects (deep, added_after)": lambda: (
            f"{taxii['partner']}objects/?limit=50&added_after={deep_time()}", accept),
        "TAXII manifest (deep, added_after)": lambda: (
            f"{taxii['partner']}manifest/?limit=50&added_after={deep_time()}", accept),
        "MISP event": lambda: (f"{base}/misp/{bulk_uuid(rng.randint(4, total - 1))}.json", plain),
        "collection indicators.csv": lambda: (
            f"{base}/feeds/partner/indicators.csv?count=50&before={deep_seq()}", plain),
        "MISP manifest.json (window)": lambda: (f"{base}/misp/manifest.json", plain),
        "MISP hashes.csv (window)": lambda: (f"{base}/misp/hashes.csv", plain),
        # MISP's periodic pull: the manifest again with the ETag it kept (downloads: what Feed.php sends)
        "MISP manifest.json (If-None-Match, 304)": lambda: (f"{base}/misp/manifest.json",
                                                            {**plain, "If-None-Match": etag()}),
        CONTROLS[0]: lambda: (f"{base}/feeds/need-to-know?count=50", plain),
        CONTROLS[1]: lambda: (
            f"{base}/search?category=partner&reporttime=2026-{rng.randint(1, 11):02d}-01/2026-12-01", plain),
        # the text search of benchmark 4 too, as a control of the store's own speed
        "Atom text search, rare word, control": lambda: (f"{base}/search?q={rng.choice(WORDS)}", plain),
    }


def _etag_of(url: str, headers: dict[str, str]) -> Callable[[], str]:
    """The ETag ``url`` answers with, asked once (untimed, at the first call)."""
    known: list[str] = []

    def etag() -> str:
        if not known:
            asked = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(asked, timeout=120) as response:
                known.append(response.headers["ETag"])
        return known[0]

    return etag


def bulk_uuid(n: int) -> str:
    """The MISP event UUID of bulk entry ``n`` (its IncidentID is bench_feed's)."""
    return str(incident_uuid("csirt.a.test", f"BULK-{n:07d}"))


def timed_get(request: Request) -> float:
    url, headers = request
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as response:
            response.read()
            assert response.status == 200, url
    except urllib.error.HTTPError as error:  # urllib raises on a 304, which a conditional request wants
        assert error.code == 304 and "If-None-Match" in headers, (url, error.code)
    return time.perf_counter() - start


Times = dict[str, list[list[float]]]  # request kind -> per run, each request's seconds


def measure(feeds: dict[str, Queries], requests: int) -> dict[str, Times]:
    """Per feed, per request kind, ``RUNS`` runs of ``requests`` requests; the feeds take turns run by
    run, so that the VM's drift hits them alike."""
    results: dict[str, Times] = {feed: {name: [] for name in urls} for feed, urls in feeds.items()}
    for _ in range(RUNS):
        for feed, urls in feeds.items():
            for name, url in urls.items():
                results[feed][name].append([timed_get(url()) for _ in range(FEWER.get(name, requests))])
    return results


def p50(runs: list[list[float]]) -> float:
    """The median of the runs' medians."""
    return statistics.median(statistics.median(run) for run in runs)


def p99(runs: list[list[float]]) -> float:
    """Over every request of every run."""
    return percentile([t for run in runs for t in run], 99)


def report(results: Times) -> str:
    rows = []
    for name, runs in results.items():
        median = p50(runs)
        page = name not in FEWER and name not in CONTROLS and "control" not in name
        verdict = ("met" if median < TARGET else "missed") if page else ""
        medians = ", ".join(f"{statistics.median(r) * 1000:.1f}" for r in runs)
        rows.append([name, f"{median * 1000:.1f}", f"[{medians}]",
                     f"{p99(runs) * 1000:.1f}", f"{TARGET * 1000:.0f}" if page else "-",
                     f"{median / TARGET:.2f}" if page else "-", verdict])
    return table(rows, ["request", "p50 ms", "runs (medians)", "p99 ms", "target ms", "ratio", ""])


def compare(before: Times, after: Times) -> str:
    rows = []
    for name, runs in after.items():
        old, new = p50(before[name]), p50(runs)
        rows.append([name, f"{old * 1000:.1f}", f"{new * 1000:.1f}", f"{new / old:.2f}",
                     f"{p99(before[name]) * 1000:.1f}", f"{p99(runs) * 1000:.1f}"])
    return table(rows, ["request", "before p50 ms", "after p50 ms", "after / before", "before p99 ms",
                        "after p99 ms"])


def memory_mb(pid: int) -> dict[str, float]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("entries", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--store", choices=(*BACKENDS, "both"), default="sqlite")
    parser.add_argument("--before", type=Path, help="a source tree to serve the same store from as well")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="per run and request kind")
    parser.add_argument("--only", default="", help="time only the request kinds whose name holds this")
    args = parser.parse_args()
    backends = BACKENDS if args.store == "both" else (args.store,)
    trees = {"after": Path(__file__).resolve().parents[1]}
    if args.before:
        trees = {"before": args.before.resolve(), **trees}
    total = args.entries
    cache = os.environ.get("BENCH_FEED_STORE")
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp, ExitStack() as stack:
        workdir = Path(cache) / f"exports-{total}" if cache else Path(tmp)
        lab, db, generation = prepare(workdir, total, document)
        targets, made, files = {"sqlite": str(db)}, {"sqlite": generation}, store_files(db)
        if "postgresql" in backends:
            targets["postgresql"], made["postgresql"], cluster = stack.enter_context(
                postgresql_store(db, workdir / "postgresql" if cache else None, PG_HOST, PG_PORT))
            files += cluster_files(cluster)
        feeds = [(backend, tree) for backend in backends for tree in trees]
        names = {feed: " ".join(part for part in (NAMES[feed[0]] if len(backends) > 1 else "",
                                                  feed[1] if len(trees) > 1 else "") if part) or "feed"
                 for feed in feeds}
        children: dict[tuple[str, str], subprocess.Popen[str]] = {}
        try:
            for n, (backend, tree) in enumerate(feeds):
                # The tree's own serve (bench_feed.serve), running the tree's code.
                children[backend, tree] = subprocess.Popen(
                    [sys.executable, str(trees[tree] / "bench" / "bench_feed.py"), "--serve",
                     str(lab["b"].config_path), targets[backend], str(PORT + n)],
                    stdout=subprocess.PIPE, text=True, cwd=trees[tree],
                    env={**os.environ, "PYTHONPATH": str(trees[tree])})
            urls: dict[str, Queries] = {}
            for n, feed in enumerate(feeds):
                child = children[feed]
                assert child.stdout is not None and child.stdout.readline().strip() == "READY"
                urls[names[feed]] = {name: url for name, url in queries(f"http://{IPS['b']}:{PORT + n}",
                                                                        total).items() if args.only in name}
            at_start = {names[f]: memory_mb(child.pid) for f, child in children.items()}
            read_into_cache(files)
            for queries_of in urls.values():  # warm: each request kind once, untimed
                for url in queries_of.values():
                    timed_get(url())
            results = measure(urls, args.requests)
            after = {names[f]: memory_mb(child.pid) for f, child in children.items()}
        finally:
            for child in children.values():
                child.kill()
                child.wait()
    print(f"Exports over {total:,} mirrored entries (documents with 10 indicators); {args.requests} requests"
          f" per kind per run ({', '.join(f'{n}: {c}' for n, c in FEWER.items())}), {RUNS} runs"
          + (", the feeds taking turns run by run" if len(urls) > 1 else "")
          + f"; MISP window {MISP_WINDOW:,} entries")
    for backend in backends:
        print(f"{NAMES[backend]} store: {made[backend]}")
    for name, times in results.items():
        print(f"\n{name}\n{report(times)}" if len(results) > 1 else report(times))
    if len(trees) > 1:
        for backend in backends:
            old, new = (names[backend, tree] for tree in ("before", "after"))
            print(f"\n{NAMES[backend]}: after ({trees['after']}) beside before ({trees['before']}), same run")
            print(compare(results[old], results[new]))
    print()
    for name in results:
        label = f"{name} feed server" if len(results) > 1 else "Feed server"
        print(f"{label} RSS: {at_start[name]['VmRSS']:.0f} MB at start,"
              f" {after[name]['VmRSS']:.0f} MB after the requests, peak {after[name]['VmHWM']:.0f} MB"
              f" (target < {RSS_TARGET_MB} MB)")


if __name__ == "__main__":
    main()
