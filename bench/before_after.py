"""Before and after in one session: a benchmark script run from two source trees in turn, side by side.

    python3 bench/before_after.py --tree before=/work/wt-before --tree after=. --rounds 5 bench_e2e.py 2000 1

Each round runs ``TREE/bench/SCRIPT ARGS`` once per tree, with this interpreter (one venv for both),
``PYTHONPATH`` and the working directory set to the tree, so that the script, the benchmark process and
the bridges it starts all run that tree's code. The trees take turns (the order swapped every round),
because this VM's speed drifts within minutes. Each run's output is kept under ``--logs``; the figures
are read from it (``FIGURES``), printed per round, as medians per tree, and as the ratio of each tree to
the first: of the medians, and the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table  # noqa: E402

Figures = dict[str, float]


def _cells(output: str, label: str) -> list[str]:
    """The cells of the table row whose first cell is ``label`` (cells are 2+ spaces apart)."""
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == label:
            return cells
    raise ValueError(f"no row {label!r} in the output")


def _publish(output: str) -> Figures:
    bridge = _cells(output, "bridge: submit -> outbox drained")
    raw = _cells(output, "raw slixmpp, pipelined W=16")
    submit = re.search(r"submit alone .*: ([\d.]+) items/s", output)
    return {"bridge items/s": float(bridge[1]), "p50 ms": float(bridge[3]), "p99 ms": float(bridge[4]),
            "raw W=16 items/s": float(raw[1]), "submit items/s": float(submit[1]) if submit else float("nan")}


def _e2e(output: str) -> Figures:
    sat, paced = _cells(output, "saturation"), _cells(output, "50/s offered")
    cpu = _cells(output, "all of them")[1].split(" / ")
    return {"sat items/s": float(sat[1]), "sat p50 ms": float(sat[2]), "sat p99 ms": float(sat[3]),
            "raw sat items/s": float(sat[4]), "bridge / raw": float(sat[7]), "50/s p99 ms": float(paced[3]),
            "CPU ms/item": float(cpu[0])}


FIGURES: dict[str, Callable[[str], Figures]] = {"bench_publish.py": _publish, "bench_e2e.py": _e2e}


def run(tree: Path, script: str, args: list[str], log: Path) -> Figures:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(tree / "bench" / script), *args], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {script} failed (exit {done.returncode}); its output is in {log}")
    print(f"  {tree.name}: {time.monotonic() - started:.0f} s", flush=True)
    return FIGURES[script](done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH",
                        help="a source tree to run the script from; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--logs", type=Path, default=Path("/tmp/bench-before-after"))
    parser.add_argument("script", choices=sorted(FIGURES))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    trees = {name: Path(path).resolve() for name, path in (t.split("=", 1) for t in options.tree)}
    options.logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[Figures]] = {name: [] for name in trees}
    for round_ in range(options.rounds):
        print(f"round {round_ + 1}/{options.rounds}", flush=True)
        names = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
        for name in names:
            log = options.logs / f"{Path(options.script).stem}-{name}-{round_ + 1}.txt"
            results[name].append(run(trees[name], options.script, options.args, log))
    report(options.script, options.args, trees, results)


def report(script: str, args: list[str], trees: dict[str, Path], results: dict[str, list[Figures]]) -> None:
    first = next(iter(trees))
    keys = list(results[first][0])
    print(f"\n{script} {' '.join(args)}: {len(results[first])} rounds, trees in turn "
          + ", ".join(f"{name} = {path}" for name, path in trees.items()))
    rows = [[str(i + 1), name, *(f"{figures[k]:.1f}" for k in keys)]
            for i in range(len(results[first])) for name in trees for figures in [results[name][i]]]
    print(table(rows, ["round", "tree", *keys]))
    print()
    medians = {name: {k: statistics.median(f[k] for f in results[name]) for k in keys} for name in trees}
    rows = [["median", name, *(f"{medians[name][k]:.1f}" for k in keys)] for name in trees]
    for name in list(trees)[1:]:
        rows.append([f"{name} / {first}", "of the medians",
                     *(f"{medians[name][k] / medians[first][k]:.2f}" for k in keys)])
        paired = list(zip(results[name], results[first], strict=True))
        rows.append([f"{name} / {first}", "median of rounds",
                     *(f"{statistics.median(a[k] / b[k] for a, b in paired):.2f}" for k in keys)])
    print(table(rows, ["", "", *keys]))


if __name__ == "__main__":
    main()
