"""Keep the demo running when one of its parts dies, and start that part again on request.

The demo's parts are its servers and bridges (``server-a``, ``bridge-a``, ``server-b``, ``bridge-b``).
When one exits, the others keep running and the demo prints how it exited and the command that starts
it again (``xmppbridge demo --workdir W --restart bridge-b``), so that someone trying the product can
watch a bridge catch up with what was published while it was down.

The restart runs in another process than the demo, so the two share what they need through files in
the demo's working directory: ``demo.json`` says how each part is started and when it is ready, and
``pids/<part>`` holds the process id of the part's current process. The demo adopts a restarted
process from its pid file, and stops it with the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from xmppbridge.demo.server import port_open

LAYOUT = "demo.json"


@dataclass(frozen=True)
class Part:
    """How to start one part of the demo, and how to tell that it is ready."""

    name: str
    argv: list[str]
    log: Path  # where its output goes; its tail is shown when it exits
    ports: list[tuple[str, int]]  # ready once all of these accept connections...
    healthz: str | None = None  # ...and this URL answers {"ready": true}

    def ready(self) -> bool:
        if not all(port_open(host, port) for host, port in self.ports):
            return False
        if self.healthz is None:
            return True
        try:
            with urllib.request.urlopen(self.healthz, timeout=2) as response:
                return bool(json.load(response).get("ready"))
        except (OSError, ValueError):
            return False

    def log_tail(self, lines: int = 12) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def save_layout(workdir: Path, parts: list[Part]) -> None:
    data = [{**asdict(part), "log": str(part.log)} for part in parts]
    (workdir / LAYOUT).write_text(json.dumps(data, indent=2) + "\n")


def load_layout(workdir: Path) -> dict[str, Part]:
    data = json.loads((workdir / LAYOUT).read_text())
    return {each["name"]: Part(each["name"], each["argv"], Path(each["log"]),
                               [(host, port) for host, port in each["ports"]], each["healthz"])
            for each in data}


def restart_command(workdir: Path, part: str) -> str:
    return f"{Path(sys.executable).parent / 'xmppbridge'} demo --workdir {workdir} --restart {part}"


class Supervisor:
    """Watches the parts' processes: the demo's own children, and processes restarted from outside."""

    def __init__(self, workdir: Path, parts: list[Part]) -> None:
        self.workdir = workdir
        self.parts = {part.name: part for part in parts}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._pids: dict[str, int] = {}  # the process we last knew of, per part
        self._reported: set[str] = set()  # parts whose exit was already reported
        (workdir / "pids").mkdir(parents=True, exist_ok=True)
        save_layout(workdir, parts)

    def track(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self._children[name] = process
        self._pids[name] = process.pid
        _pid_file(self.workdir, name).write_text(f"{process.pid}\n")

    def poll(self) -> list[str]:
        """One message for each part that stopped since the last call; adopts restarted parts."""
        messages = []
        for name in self.parts:
            recorded = _read_pid(self.workdir, name)
            if recorded is not None and recorded != self._pids.get(name) and _alive(recorded):
                self._pids[name] = recorded  # started again with --restart
                self._reported.discard(name)
            pid = self._pids.get(name)
            if pid is None or name in self._reported or self._running(name, pid):
                continue
            self._reported.add(name)
            messages.append(self._exit_message(name, pid))
        return messages

    def stop_all(self, timeout: float = 15.0) -> None:
        """Bridges first (they say goodbye to their servers), then servers."""
        for name in sorted(self.parts, key=lambda n: not n.startswith("bridge-")):
            pid = self._pids.get(name)
            if pid is not None and self._running(name, pid):
                _terminate(pid, timeout)
            if (child := self._children.get(name)) is not None:
                child.poll()  # reap it

    def _running(self, name: str, pid: int) -> bool:
        child = self._children.get(name)
        if child is not None and child.pid == pid:
            return child.poll() is None
        return _alive(pid)

    def _exit_message(self, name: str, pid: int) -> str:
        child = self._children.get(name)
        how = "exited"
        if child is not None and child.pid == pid and child.returncode is not None:
            how = _describe_exit(child.returncode)
        part = self.parts[name]
        return (f"{name} (pid {pid}) {how}. The other servers and bridges keep running.\n"
                f"last lines of {part.log}:\n{part.log_tail()}\n"
                f"start it again with:\n  {restart_command(self.workdir, name)}")


def restart(workdir: Path, name: str, timeout: float = 120.0) -> int:
    """``xmppbridge demo --restart PART``: start one part of a running demo again, in the background."""
    try:
        parts = load_layout(workdir)
    except (OSError, ValueError) as exc:
        print(f"no demo in {workdir} ({exc}); start one with `make demo`", file=sys.stderr)
        return 2
    if name not in parts:
        print(f"the demo has no part {name!r}; its parts are {', '.join(parts)}", file=sys.stderr)
        return 2
    running = _read_pid(workdir, name)
    if running is not None and _alive(running):
        print(f"{name} is running already (pid {running})", file=sys.stderr)
        return 1
    part = parts[name]
    with open(part.log, "ab") as log:
        process = subprocess.Popen(part.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _pid_file(workdir, name).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while not part.ready():
        if process.poll() is not None:
            print(f"{name} {_describe_exit(process.returncode)} while starting:\n{part.log_tail()}",
                  file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"{name} (pid {process.pid}) not ready within {timeout:.0f} s:\n{part.log_tail()}",
                  file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"{name} is running again (pid {process.pid}); the demo watches it and stops it with the rest.")
    return 0


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        sig = signal.Signals(-returncode)
        return f"was killed by signal {-returncode} ({sig.name})"
    return f"exited with status {returncode}"


def _pid_file(workdir: Path, name: str) -> Path:
    return workdir / "pids" / name


def _read_pid(workdir: Path, name: str) -> int | None:
    try:
        return int(_pid_file(workdir, name).read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie does not (nobody may reap a process the demo did not start)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)

