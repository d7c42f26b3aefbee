"""Machine loss for the failover tests and benchmark (issue 16): a process on a "machine" of its own, a
Linux network namespace joined to the host by a veth pair, whose link can be cut silently.

The namespace reaches the host's servers at their usual loopback addresses (the private PostgreSQL
cluster, Prosody's component port), so nothing of the servers' configuration changes (but for
PostgreSQL's trust of ``NET``, tests/postgres.py): its own loopback addresses are removed, but for
``listen_ip`` where its instance's listeners are, and 127.0.0.0/8 is routed over the veth; both ends
accept loopback addresses from a wire (``route_localnet``, per device). The host sees the machine's
connections come from ``machine_ip``, and asks its listeners from inside the namespace
(``MachineInstance.health``).

``cut`` puts a ``blackhole`` qdisc (sch_blackhole: every packet dropped, the sender told it was sent) on
both ends: whatever either side sends vanishes, FIN and RST included, as when a machine loses power or
its network. The host's sockets to the machine stay established until their own keepalives or timeouts
give up. ``restore`` removes them. Everything made is removed on ``close``, also after a failure.

Needs root and iproute2 (the Makefile installs it); ``unavailable`` says why it cannot run here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields, replace

import yaml

from xmppbridge.demo.instances import Instance

NET = "10.250"  # 10.250.<slot>.<4 * index>/30 per machine: far from the loopback addresses the tests use


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def unavailable() -> str | None:
    """Why machines cannot be made here (not root, no iproute2, no namespaces), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed: run `make test`, which installs it"
    probe = f"xbprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


@dataclass
class Machine:
    """One namespace and its link; ``index`` tells apart the machines of one slot (0-9)."""

    index: int
    slot: int = int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))

    def __post_init__(self) -> None:
        tag = f"{self.slot}m{self.index}"
        self.name = f"xmppbridge-{tag}"
        self.host_dev, self.machine_dev = f"xb{tag}h", f"xb{tag}n"  # at most 15 characters
        self.host_ip = f"{NET}.{self.slot}.{4 * self.index + 1}"  # the /30 at 4 * index
        self.machine_ip = f"{NET}.{self.slot}.{4 * self.index + 2}"
        self.listen_ip = f"127.0.{self.slot}.{240 + self.index}"  # the machine's own loopback address

    def open(self) -> Machine:
        self.close()  # what a run killed half-way may have left
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_dev, "type", "veth", "peer", "name", self.machine_dev)
            _ip("link", "set", self.machine_dev, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_dev)
            _ip("link", "set", self.host_dev, "up")
            inside = ("-n", self.name)
            _ip(*inside, "addr", "add", f"{self.machine_ip}/30", "dev", self.machine_dev)
            _ip(*inside, "link", "set", self.machine_dev, "up")
            # 127.0.0.0/8 is the host's, over the link, but for one address of the machine's own, where
            # its listeners are (the operator listener refuses a non-loopback address, and so does a feed
            # with users without TLS).
            # (Up first: bringing the loopback device up adds 127.0.0.1/8 to it.)
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "addr", "flush", "dev", "lo")
            _ip(*inside, "addr", "add", f"{self.listen_ip}/32", "dev", "lo")
            _ip(*inside, "route", "add", "127.0.0.0/8", "via", self.host_ip, "src", self.machine_ip)
            _sysctl(f"net.ipv4.conf.{self.host_dev}.route_localnet=1")
            _sysctl(f"net.ipv4.conf.{self.machine_dev}.route_localnet=1", self.name)
        except BaseException:
            self.close()
            raise
        return self

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run on this machine (``ip netns exec`` execs it: the process keeps its pid, and
        signals sent to it reach the program)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, instance: Instance) -> MachineInstance:
        """``instance`` (not started) moved onto this machine, same ports: its listeners on
        ``listen_ip``, which only the machine reaches."""
        config = yaml.safe_load(instance.config_path.read_text())
        urls = {}
        for section in ("feed", "metrics"):
            port = config[section]["listen"].rsplit(":", 1)[1]
            config[section]["listen"] = f"{self.listen_ip}:{port}"
            urls[section] = f"http://{self.listen_ip}:{port}/"
        config["feed"]["base_url"] = urls["feed"]
        instance.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        moved = replace(instance, feed_url=urls["feed"], metrics_url=urls["metrics"], prefix=self.command([]))
        return MachineInstance(**{f.name: getattr(moved, f.name) for f in fields(Instance)})

    def cut(self) -> None:
        """The machine vanishes: from now on nothing it sends arrives, nothing sent to it arrives."""
        _ip("-n", self.name, "link", "show", self.machine_dev)  # it is there to cut
        subprocess.run(["tc", "qdisc", "add", "dev", self.host_dev, "root", "blackhole"],
                       check=True, capture_output=True, timeout=30)
        subprocess.run(["tc", "-n", self.name, "qdisc", "add", "dev", self.machine_dev, "root", "blackhole"],
                       check=True, capture_output=True, timeout=30)

    def restore(self) -> None:
        for argv in (["tc", "qdisc", "del", "dev", self.host_dev, "root"],
                     ["tc", "-n", self.name, "qdisc", "del", "dev", self.machine_dev, "root"]):
            subprocess.run(argv, capture_output=True, timeout=30)  # absent already: nothing to do

    def dropped(self) -> int:
        """Packets the cut has swallowed so far, both ways (``tc -s``): proof that it dropped them."""
        total = 0
        for argv in (["tc", "-s", "qdisc", "show", "dev", self.host_dev],
                     ["tc", "-n", self.name, "-s", "qdisc", "show", "dev", self.machine_dev]):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
            if "blackhole" in out and "dropped " in out:
                total += int(out.split("dropped ", 1)[1].split(",", 1)[0])
        return total

    def close(self) -> None:
        """Remove the link and the namespace (deleting one end of a veth pair deletes both). Processes
        still running inside keep the namespace alive but unreachable: stop them first."""
        subprocess.run(["ip", "link", "del", self.host_dev], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


# /healthz asked from on the machine (its listeners are on its own loopback address); {} when no answer.
_HEALTH = ("import json, sys, urllib.request\n"
           "try:\n"
           "    print(urllib.request.urlopen(sys.argv[1] + 'healthz', timeout=2).read().decode())\n"
           "except OSError:\n"
           "    print('{}')\n")


class MachineInstance(Instance):
    """An instance on a ``Machine``: the host asks its operator listener through the machine's namespace
    (a short process there per question), which answers only while the link is up."""

    def health(self) -> dict[str, object]:
        try:
            asked = subprocess.run([*self.prefix, sys.executable, "-c", _HEALTH, self.metrics_url],
                                   capture_output=True, text=True, timeout=30)
            return json.loads(asked.stdout or "{}")
        except (subprocess.TimeoutExpired, ValueError):
            return {}


def _sysctl(setting: str, namespace: str | None = None) -> None:
    argv = ["sysctl", "-q", "-w", setting]
    subprocess.run(["ip", "netns", "exec", namespace, *argv] if namespace else argv, check=True,
                   capture_output=True, timeout=30)
