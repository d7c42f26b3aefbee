"""Shared pieces of the benchmarks: timing, medians, documents and a results table."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "config" / "samples" / "04-ddos-amber-v2.xml"
RUNS = 3


def per_op_seconds(operation: Callable[[], object], ops: int) -> float:
    """Median seconds per call over ``ops`` calls."""
    times = []
    for _ in range(ops):
        start = time.perf_counter()
        operation()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_of_runs(operation: Callable[[], object], ops: int, runs: int = RUNS) -> tuple[float, list[float]]:
    """(median of the per-run medians, the per-run medians), seconds."""
    results = [per_op_seconds(operation, ops) for _ in range(runs)]
    return statistics.median(results), results


def typical_document() -> bytes:
    return SAMPLE.read_bytes()


def large_document(target_bytes: int = 500_000) -> bytes:
    """A valid IODEF 2.0 document of about ``target_bytes``: one Incident with many EventData."""
    event = """
    <EventData>
      <Description>Scanning from {n} against the web farm; see the attached flow records</Description>
      <Flow><System category="source"><Node><Address category="ipv4-addr">192.0.2.{host}</Address></Node>
      </System></Flow>
    </EventData>"""
    head = """<?xml version="1.0" encoding="UTF-8"?>
<IODEF-Document version="2.00" xml:lang="en" xmlns="urn:ietf:params:xml:ns:iodef-2.0">
  <Incident purpose="reporting" restriction="amber">
    <IncidentID name="csirt.a.test">BENCH-LARGE</IncidentID>
    <GenerationTime>2026-11-20T08:30:00Z</GenerationTime>
    <Description>Large benchmark document</Description>
    <Contact role="creator" type="organization"><Email><EmailTo>csirt@a.test</EmailTo></Email></Contact>"""
    tail = "\n  </Incident>\n</IODEF-Document>\n"
    events, n = [], 0
    while len(head) + sum(map(len, events)) + len(tail) < target_bytes:
        events.append(event.format(n=n, host=n % 250 + 1))
        n += 1
    return (head + "".join(events) + tail).encode()


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def option(name: str, default: str) -> str:
    """The command line's ``--name value`` or ``--name=value``."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def choices(name: str, known: Collection[str], default: str) -> list[str]:
    """The command line's comma-separated ``--name a,b``, each one of ``known``; exits naming the others."""
    chosen = option(name, default).split(",")
    if unknown := set(chosen) - set(known):
        sys.exit(f"{name}: unknown {', '.join(sorted(unknown))} (one or more of {', '.join(known)})")
    return chosen


def positional(*with_values: str, flags: Collection[str] = ()) -> list[str]:
    """The command line's arguments that are not options, nor the values of ``with_values`` options.

    A benchmark runs for minutes, so a command line it does not understand must not start one:
    ``-h``/``--help`` prints the script's docstring, and an option that is neither in ``with_values``
    nor in ``flags`` exits naming the known ones."""
    argv, found = sys.argv[1:], []
    if "-h" in argv or "--help" in argv:
        print((sys.modules["__main__"].__doc__ or "").strip())
        sys.exit(0)
    for i, arg in enumerate(argv):
        if i and argv[i - 1] in with_values:
            continue  # an option's value, such as --hub-nice -10
        if arg.startswith("-") and arg.split("=", 1)[0] not in (*with_values, *flags):
            known = ", ".join(sorted((*with_values, *flags, "--help")))
            sys.exit(f"unknown option {arg} (known: {known}); nothing was run")
        if not arg.startswith("-"):
            found.append(arg)
    return found
