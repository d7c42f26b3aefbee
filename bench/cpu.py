"""Where a run's CPU went: per process, time on a core and time waiting for one (Linux ``/proc``).

A throughput ratio alone cannot say whether the bridge path is slow or the machine is full. The kernel's
scheduler statistics can: ``/proc/PID/task/*/schedstat`` holds, per thread, the nanoseconds spent on a
core and the nanoseconds spent runnable in a run queue, waiting for one. Prosody is single-threaded
and sleeps on its storage's fsyncs many times per published item, so every one of its wake-ups that
finds both cores busy shows up here as waiting.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    cpu: float  # seconds on a core
    waited: float  # seconds runnable, waiting for a core

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu - other.cpu, self.waited - other.waited)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.cpu + other.cpu, self.waited + other.waited)


def usage(pid: int) -> Usage | None:
    """The process's threads summed; None where the kernel keeps no scheduler statistics."""
    cpu = waited = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                on_cpu, in_queue, _ = (task / "schedstat").read_text().split()
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that ended while we looked
            cpu, waited = cpu + int(on_cpu), waited + int(in_queue)
    except (FileNotFoundError, PermissionError):
        return None
    return Usage(cpu / 1e9, waited / 1e9)


def tree_usage(root: int) -> dict[int, Usage]:
    """Per process: ``root`` and every process descended from it (PostgreSQL: the postmaster and its
    backends, one per connection)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name, in parentheses, may hold spaces: the fields after it are fixed.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if (used := usage(pid)) is not None:
            found[pid] = used
        todo += children.get(pid, [])
    return found


def idle_seconds() -> float:
    """Seconds all cores together have been idle (``/proc/stat``: idle + iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


class Budget:
    """CPU and run-queue waiting of named processes between ``start`` and ``stop``. ``trees``: named
    process trees, counted with their descendants; a descendant that starts during the run counts in
    full, one that ends during it is missed (the store's pools keep their connections, and so their
    server processes, for the whole run)."""

    def __init__(self, pids: dict[str, int], trees: dict[str, int] | None = None) -> None:
        self.trees = trees or {}
        self.pids = {**pids, **self.trees, "this process": os.getpid()}
        self._start: dict[str, Usage | None] = {}
        self._tree_start: dict[str, dict[int, Usage]] = {}
        self._idle = self._time = 0.0
        self.used: dict[str, Usage] = {}
        self.wall = 0.0
        self.idle = 0.0  # share of the machine's cores left idle over the run

    def start(self) -> None:
        self._start = {name: usage(pid) for name, pid in self.pids.items() if name not in self.trees}
        self._tree_start = {name: tree_usage(root) for name, root in self.trees.items()}
        self._idle, self._time = idle_seconds(), time.monotonic()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._time
        self.idle = (idle_seconds() - self._idle) / (self.wall * (os.cpu_count() or 1))
        for name, pid in self.pids.items():
            if name in self.trees:
                continue
            before, after = self._start.get(name), usage(pid)
            if before is not None and after is not None:
                self.used[name] = after - before
        for name, root in self.trees.items():
            if not (after_tree := tree_usage(root)):
                continue
            before_tree = self._tree_start.get(name, {})
            zero = Usage(0, 0)
            self.used[name] = sum((used - before_tree.get(pid, zero) for pid, used in after_tree.items()),
                                  zero)
