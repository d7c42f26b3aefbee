"""More ``xmppbridge run`` instances of one member of a local consortium, over the member's own store
(issue 16): the failover tests and benchmark start two or more and kill the active one.

Each instance gets the member's config with its own ``instance.name``, feed port and operator listener
port; the store, the component JID and everything else are the member's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xmppbridge.demo.consortium import Consortium, stop_process


@dataclass
class Instance:
    name: str  # its instance.name
    config_path: Path
    feed_url: str
    metrics_url: str
    log_path: Path
    # What the command runs under: e.g. ``ip netns exec NS``, to run it on a "machine" of its own
    # (tests/netns.py), whose loss the failover tests simulate.
    prefix: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "xmppbridge.cli", "run", "-c", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()

    def health(self) -> dict[str, object]:
        """The detailed /healthz of its operator listener; {} while it does not answer."""
        try:
            with urllib.request.urlopen(self.metrics_url + "healthz", timeout=2) as response:
                return json.load(response)
        except OSError:
            return {}

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url + "metrics", timeout=5) as response:
            return response.read().decode()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_serving(self, timeout: float = 60.0) -> dict[str, object]:
        """Until it answers on its operator listener (active or standby); its /healthz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"instance {self.name} exited:\n{self.log_tail()}")
            health = self.health()
            if health.get("role"):
                return health
            time.sleep(0.1)
        raise RuntimeError(f"instance {self.name} not serving within {timeout} s:\n{self.log_tail()}")

    def stop(self, *, kill: bool = False) -> None:
        if not self.running():
            return
        assert self.process is not None
        stop_process(self.process, kill=kill)

    def logged_at(self, words: str, since: int = 0) -> float | None:
        """The time (epoch) of the first record of its text log, from character ``since`` on, with
        ``words`` in it (maybe on a later line of the record, as in a multi-line error); None if none."""
        stamped: str | None = None  # the last line that starts a record: "2026-12-03 13:24:00,121 ERROR"
        for line in self.log_path.read_text(errors="replace")[since:].splitlines():
            if line[:4].isdigit() and line[4:5] == "-" and line[19:20] == ",":
                stamped = line
            if words in line and stamped is not None:
                stamp = time.strptime(stamped[:19], "%Y-%m-%d %H:%M:%S")  # logging's asctime: local time
                return time.mktime(stamp) + int(stamped[20:23]) / 1000
        return None

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-size:] if self.log_path.exists() else "(no log)"


def instances(consortium: Consortium, member: str, count: int, *, feed_port: int,
              metrics_port: int, feed_ip: str = "127.0.0.1") -> list[Instance]:
    """``count`` instance configs of ``member`` (``<member>1``, ``<member>2``, ...), on feed ports from
    ``feed_port`` on ``feed_ip`` (the benchmarks move them off 127.0.0.1, the tests' feeds' address)
    and operator ports from ``metrics_port``; call after ``write_files``."""
    base = consortium[member]
    config = yaml.safe_load(base.config_path.read_text())
    made = []
    for i in range(count):
        name = f"{member}{i + 1}"
        config["instance"] = {"name": name}
        feed_url = f"http://{feed_ip}:{feed_port + i}/"
        config["feed"]["listen"] = f"{feed_ip}:{feed_port + i}"
        config["feed"]["base_url"] = feed_url
        config["metrics"]["listen"] = f"{base.ip}:{metrics_port + i}"
        path = base.config_path.with_name(f"{name}.yaml")  # beside the member's: same relative paths
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        made.append(Instance(name, path, feed_url,
                             f"http://{base.ip}:{metrics_port + i}/", consortium.workdir / f"{name}.log"))
    return made
