"""Benchmark 6: federated delivery while B's feed is flooded with wrong passwords.

A two-domain consortium (bench/lab.py: federated Prosody, both bridges as processes). Latency = B's
``received_at`` minus the submit time at A, items submitted at 10/s (bench_e2e.bridge_run). Three
phases, each with both bridges started afresh on B's changed config:

- no flood;
- flood, backoff off: 8 guessing processes, each from its own loopback address and guessing its own
  user's password on B's feed as fast as answers come, ignoring 429 and Retry-After. B's
  ``feed.login_backoff`` then never blocks, has no tarpit and hashes 8 passwords at once: how the feed
  behaved before the throttle;
- flood, backoff on: the same flood against the default settings.

Prints the median latencies, their ratio to the no-flood median, and what the guessers got (401: a
password was hashed, 429: refused unheard). Figures only, nothing asserted (`bench_auth_flood.py [N]
[RUNS]`).
"""

from __future__ import annotations

import base64
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.synchronize import Event
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_e2e import bridge_run  # noqa: E402
from bench.common import RUNS, positional, table  # noqa: E402
from bench.lab import NET, BenchConsortium, consortium  # noqa: E402

GUESSERS = 8
RATE = 10.0  # items/s submitted at A while B is flooded
N = 60  # items per phase and run (`bench_auth_flood.py 100 3` for BENCHMARKS.md)
OFF = {"free_failures": 10**9, "tarpit": 0, "hash_slots": GUESSERS}  # never blocks: the old behaviour
PHASES = {"no flood": None, "flood, backoff off": OFF, "flood, backoff on": {}}


def guess(host: str, port: int, source: str, user: str, stop: Event, results: multiprocessing.Queue) -> None:
    """One guesser: wrong passwords for ``user`` on one keep-alive connection, from ``source``."""
    statuses: Counter[int] = Counter()
    connection = http.client.HTTPConnection(host, port, timeout=30, source_address=(source, 0))
    n = 0
    while not stop.is_set():
        n += 1
        token = base64.b64encode(f"{user}:wrong-{n}".encode()).decode()
        try:
            connection.request("GET", "/feeds/partner", headers={"Authorization": f"Basic {token}"})
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
        except (OSError, http.client.HTTPException):
            statuses[0] += 1
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=30, source_address=(source, 0))
    connection.close()
    results.put(dict(statuses))


def configure(lab: BenchConsortium, backoff: dict[str, object] | None) -> None:
    """B's ``feed.login_backoff`` for the next phase (None: the defaults, as with {})."""
    path = lab["b"].config_path
    config = yaml.safe_load(path.read_text())
    config["feed"].pop("login_backoff", None)
    if backoff:
        config["feed"]["login_backoff"] = backoff
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def phase(lab: BenchConsortium, tag: str, count: int, flood: bool) -> tuple[float, Counter[int], float]:
    """(p50 latency s, guessers' answers by status, seconds flooded) of one paced run."""
    stop, results = multiprocessing.Event(), multiprocessing.Queue()
    b = lab["b"]
    guessers = [multiprocessing.Process(target=guess, args=(b.ip, b.feed_port, f"{NET}.{100 + i}",
                                                             f"user{i}", stop, results))
                for i in range(GUESSERS if flood else 0)]
    for each in guessers:
        each.start()
    started = time.monotonic()
    if flood:
        time.sleep(2.0)  # the flood in full swing before the first item
    try:
        _, p50, _ = bridge_run(lab, tag, count, RATE)
    finally:
        stop.set()
        answers: Counter[int] = Counter()
        for _ in guessers:
            answers.update(results.get(timeout=60))
        for each in guessers:
            each.join(30)
    return p50, answers, time.monotonic() - started


def main() -> None:
    args = positional()
    count = int(args[0]) if args else N
    runs = int(args[1]) if len(args) > 1 else RUNS
    latencies: dict[str, list[float]] = {name: [] for name in PHASES}
    answers: dict[str, Counter[int]] = {name: Counter() for name in PHASES}
    flooded: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp, consortium(Path(tmp)) as lab:
        # One user per guesser on B's feed, each with a real scrypt hash to miss.
        lab.write_files(subscriptions={"a": [], "b": ["a"]},
                        users={f"user{i}": {"read": ["public"]} for i in range(GUESSERS)})
        for run in range(runs):
            for number, (name, backoff) in enumerate(PHASES.items()):
                configure(lab, backoff)
                lab.start_bridge("a")
                lab.start_bridge("b")
                if run == 0 and number == 0:
                    bridge_run(lab, "WARM", 8, None)  # creates the nodes; B discovers them
                p50, got, seconds = phase(lab, f"F{run}{number}", count, backoff is not None)
                latencies[name].append(p50)
                answers[name].update(got)
                flooded[name] += seconds
                lab.stop_bridge("a")
                lab.stop_bridge("b")
    base = statistics.median(latencies["no flood"])
    rows = []
    for name in PHASES:
        median = statistics.median(latencies[name])
        got, seconds = answers[name], flooded[name]
        rate = f"{sum(got.values()) / seconds:.0f}" if got else "-"
        rows.append([name, f"{median * 1000:.1f}", f"{median / base:.2f}",
                     ", ".join(f"{status}: {count}" for status, count in sorted(got.items())) or "-", rate,
                     " ".join(f"{t * 1000:.0f}" for t in latencies[name])])
    print(f"Federated delivery A -> B at {RATE:.0f} items/s, N={count}, median of {runs} runs; "
          f"{GUESSERS} guessers on B's feed, one address and one user each")
    print(table(rows, ["phase", "p50 ms", "ratio to no flood", "guessers' answers (status: count)",
                       "guesses/s", "per run p50 ms"]))


if __name__ == "__main__":
    main()
