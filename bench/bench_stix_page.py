"""The in-process cost of a STIX page: a bundle of 50 entries of benchmark 13's document (ten indicators,
``bench_exports.document``), its documents read as the exports read them (``Store.current_documents``),
with no HTTP. Each tree given runs in its own child process, the trees taking turns run by run, so that a
before/after (e.g. the main branch's worktree and this one) meets the same moments of the machine.

    python3 bench/bench_stix_page.py TREE [TREE ...] [--runs 3] [--pages 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(pages: int) -> float:
    """The median of ``pages`` timed page builds, in ms, in this process (with its tree on the path)."""
    from bench.bench_exports import document
    from tests.test_feed_support import store_document
    from xmppbridge.feed import stix
    from xmppbridge.feed.layout import FeedUrls
    from xmppbridge.store import Store

    urls = FeedUrls("https://feed.example")
    with tempfile.TemporaryDirectory() as directory, Store(Path(directory) / "s.sqlite") as store:
        entries = [store_document(store, document(f"E-{n}", "green")) for n in range(50)]
        ids = [entry.id for entry in entries]

        def page() -> bytes:
            found = store.current_documents(ids)
            # A tree from before schema 11 returns the bare documents (bytes), with no stored indicators.
            return stix.bundle([dataclasses.replace(e, **_fields(found[e.id])) for e in entries], urls)

        for _ in range(3):  # warm
            page()
        times = []
        for _ in range(pages):
            start = time.perf_counter()
            page()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _fields(document: object) -> dict[str, object]:
    if isinstance(document, bytes):
        return {"xml": document}
    return {"xml": document.xml, "indicators": document.indicators}  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(args.pages))
        return
    medians: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    for _ in range(args.runs):
        for tree in args.trees:
            out = subprocess.run([sys.executable, __file__, str(tree), "--child", "--pages", str(args.pages)],
                                 env={"PYTHONPATH": str(tree.resolve()), "PATH": "/usr/bin:/bin"},
                                 check=True, capture_output=True, text=True).stdout
            medians[tree].append(float(out.split()[-1]))
    first = statistics.median(medians[args.trees[0]])
    print(f"STIX page of 50 (read + bundle, in process), {args.runs} runs x {args.pages} pages")
    for tree, runs in medians.items():
        p50 = statistics.median(runs)
        rounded = [round(r, 2) for r in runs]
        print(f"{str(tree):40s} p50 {p50:6.2f} ms  runs {rounded}  vs first {p50 / first:.2f}")


if __name__ == "__main__":
    main()
