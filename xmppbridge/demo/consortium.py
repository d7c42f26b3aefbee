"""A consortium on one machine: one XMPP server (Prosody or ejabberd) and one bridge process per
member, federated over s2s.

``make demo`` and the integration tests both run this, so what the tests prove is what a user sees; the
scale benchmark runs it with up to 16 members. Each member gets its own loopback address (every server
listens for s2s on port 5269 of its own address); everything generated lives under ``workdir``. Its feed
listens on 127.0.0.1, its operator listener (/metrics, the detailed /healthz that says when it is ready)
on the member's own address, each on a port of its own. Who follows whom is a ``demo.topology.Topology``
(default: the full mesh); a hub's ``relay:`` section comes from it too.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xmppbridge.demo.ejabberd import EjabberdServer
from xmppbridge.demo.prosody import ProsodyServer
from xmppbridge.demo.topology import Topology, mesh
from xmppbridge.feed.auth import hash_password
from xmppbridge.policy.audiences import Audiences, parse_audiences
from xmppbridge.signing.keys import generate_identity_files

Server = ProsodyServer | EjabberdServer
# Servers started at once: each start mostly waits for its ports to open, but ejabberd's Erlang VM
# takes a core for a second or so, so more than a few at a time only queue up on this 2-core machine.
PARALLEL_STARTS = 4

# What the demo's members share with each other by default: every restriction (as the flat whitelist did).
SHARED = ("partner", "need-to-know", "default", "private")
# The feed user of every member who sees the operators' pages and reads nothing beyond public: watching
# the traffic needs no right to read the incidents.
OPERATOR = "operator"


@dataclass
class Member:
    name: str  # "a" -> domain a.test
    ip: str
    feed_port: int
    metrics_port: int
    workdir: Path
    # The member's XMPP server, Prosody or ejabberd (the name is older than ejabberd support; tests
    # reach it under this name).
    prosody: Server = field(init=False)
    bridge: subprocess.Popen[bytes] | None = None
    passwords: dict[str, str] = field(default_factory=dict)  # feed user -> password, set by write_files
    store_url: str | None = None  # a PostgreSQL store (store.url) instead of the SQLite file

    @property
    def domain(self) -> str:
        return f"{self.name}.test"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.yaml"

    @property
    def store_path(self) -> Path:
        return self.workdir / "data" / f"{self.name}.sqlite"

    @property
    def store(self) -> str:
        """What the member's bridge opens: its PostgreSQL URL, or its SQLite file."""
        return self.store_url or str(self.store_path)

    @property
    def feed_url(self) -> str:
        return f"http://127.0.0.1:{self.feed_port}/"

    @property
    def metrics_url(self) -> str:
        """The operator listener: /metrics and the detailed /healthz."""
        return f"http://{self.ip}:{self.metrics_port}/"

    @property
    def bridge_jid(self) -> str:
        return self.prosody.bridge_jid

    @property
    def pubsub_jid(self) -> str:
        return self.prosody.pubsub_jid

    def basic_auth(self, user: str = "analyst") -> dict[str, str]:
        """The HTTP header that signs ``user`` in to this member's feed."""
        token = base64.b64encode(f"{user}:{self.passwords[user]}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}


class Consortium:
    def __init__(self, workdir: Path, members: dict[str, str], *, feed_port_base: int = 8081,
                 secret: str = "demo-component-secret", discovery_interval: float = 2.0,
                 check_interval: float | None = None, metrics_port_base: int | None = None,
                 servers: Mapping[str, str] | None = None, topology: Topology | None = None) -> None:
        """``members`` maps a short name ("a") to its loopback address ("127.0.0.2"). The check interval
        is the discovery interval unless given (short ones let tests see a remote restart healed soon).
        Operator listeners get ports from ``metrics_port_base`` (default: the feed's base + 1000).
        ``servers`` maps a member to ``prosody`` (the default) or ``ejabberd``; ``topology`` says who
        follows whom (default: the full mesh)."""
        self.workdir = workdir.resolve()
        self.discovery_interval = discovery_interval
        self.check_interval = discovery_interval if check_interval is None else check_interval
        metrics_base = feed_port_base + 1000 if metrics_port_base is None else metrics_port_base
        self.members = {
            name: Member(name, ip, feed_port_base + i, metrics_base + i, self.workdir)
            for i, (name, ip) in enumerate(members.items())
        }
        self.topology = topology or mesh(list(self.members))
        if set(self.topology.members) != set(self.members):
            raise ValueError(f"topology {self.topology.name} is of members {sorted(self.topology.members)}, "
                             f"not {sorted(self.members)}")
        kinds = servers or {}
        for member in self.members.values():
            peers = {m.domain: m.ip for m in self.members.values() if m is not member}
            kind = EjabberdServer if kinds.get(member.name, "prosody") == "ejabberd" else ProsodyServer
            member.prosody = kind(member.domain, member.ip, self.workdir / "prosody" / member.name, secret,
                                  peers=peers)
        self.secret = secret
        self._audiences: dict[str, dict[str, object]] = {}  # member -> its audiences: section

    def __getitem__(self, name: str) -> Member:
        return self.members[name]

    # -- setup -------------------------------------------------------------------------------------

    def write_files(self, *, subscriptions: dict[str, list[str]] | None = None,
                    anonymous_restrictions: list[str] | None = None,
                    users: dict[str, dict[str, list[str]]] | None = None,
                    feed: dict[str, object] | None = None,
                    audiences: dict[str, dict[str, object]] | None = None,
                    extra: dict[str, dict[str, object]] | None = None) -> None:
        """Keys and one bridge config per member, each with the consortium's member registry.

        ``subscriptions`` maps a member to the members whose nodes it subscribes to (default: those
        the topology says it follows, all nodes). ``audiences`` maps a member to its ``audiences:``
        section (default: every other member reads every restriction, as a flat whitelist did).

        Each feed gets the user ``analyst``, who may read and write everything, the user ``operator``,
        who may see the operators' pages (``/dashboard``, ``/metrics``, the detailed ``/healthz``) and
        read only what anyone may, plus ``users`` (name -> ``read``/``write`` rights), each with a fresh
        random password (``Member.passwords``); the analysts' then the operators' credentials go to
        ``<workdir>/credentials``, one ``<member> <user>:<password>`` line per member and user, for HTTP
        Basic. ``feed`` adds settings to every feed section (e.g. archive_size).
        ``extra`` maps a member to more top-level sections of its config (e.g. a hub's ``relay:``).
        """
        keys = self.workdir / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        for member in self.members.values():
            key, cert = keys / f"{member.name}.key", keys / f"{member.name}.crt"
            if not key.exists():
                common_name = f"CSIRT {member.name.upper()} signing key ({member.domain})"
                # subjectAltName: the IncidentID domain the member speaks for (signing.trust).
                generate_identity_files(common_name, key, cert, domains=(member.domain,))
        for member in self.members.values():
            sources = (subscriptions or {}).get(member.name, self.topology.follows[member.name])
            self._audiences[member.name] = (audiences or {}).get(member.name, {r: "all" for r in SHARED})
            config = {
                "component": {"jid": member.bridge_jid, "secret": self.secret,
                              "server": {"host": member.ip, "port": member.prosody.component_port}},
                "pubsub": {"service": member.pubsub_jid, "node_prefix": "iodef",
                           "discovery_interval": self.discovery_interval,
                           "check_interval": self.check_interval},
                "signing": {"key": f"keys/{member.name}.key", "cert": f"keys/{member.name}.crt"},
                # One entry per member, ours included: trust, subscriptions and audiences derive from it.
                "members": [self._registry_entry(m, follow=m.name in sources) for m in self.members.values()],
                "audiences": self._audiences[member.name],
                "store": ({"url": member.store_url} if member.store_url else
                          {"path": str(member.store_path.relative_to(self.workdir))}),
                "feed": {"listen": f"127.0.0.1:{member.feed_port}", "base_url": member.feed_url,
                         "anonymous_restrictions": anonymous_restrictions or ["public"],
                         "users": self._feed_users(member, users or {}), **(feed or {})},
                "metrics": {"listen": f"{member.ip}:{member.metrics_port}"},
                # People: every member's analyst may read everything in chat; the domain's incident
                # room gets public summaries; the analyst administers the bridge (ad-hoc commands).
                "chat": {"readers": {"all": [f"analyst@{m.domain}" for m in self.members.values()]}},
                "rooms": [{"room": f"incidents@rooms.{member.domain}", "post": ["public"]}],
                "admins": [f"analyst@{member.domain}"],
                # A hub's relay: rules, as the topology says it relays (``Topology.relay_section``).
                **({"relay": relay} if (relay := self.topology.relay_section(member.name)) else {}),
                **(extra or {}).get(member.name, {}),
            }
            (self.workdir / "data").mkdir(exist_ok=True)
            member.config_path.write_text(
                f"# Generated by xmppbridge for the {member.domain} member of a local consortium.\n"
                + yaml.safe_dump(config, sort_keys=False))
        credentials = self.workdir / "credentials"
        credentials.write_text("".join(f"{m.name} {user}:{m.passwords[user]}\n"
                                       for user in ("analyst", OPERATOR) for m in self.members.values()))
        credentials.chmod(0o600)

    def audiences(self, name: str) -> Audiences:
        """Member ``name``'s audiences as its bridge reads them (after ``write_files``)."""
        bridges = {m.name: m.bridge_jid for m in self.members.values() if m.name != name}
        return parse_audiences(self._audiences[name], bridges)

    @staticmethod
    def _registry_entry(member: Member, *, follow: bool) -> dict[str, object]:
        return {"name": member.name, "bridge": member.bridge_jid, "pubsub": member.pubsub_jid,
                "domains": [member.domain], "certificate": f"keys/{member.name}.crt", "follow": follow}

    @staticmethod
    def _feed_users(member: Member, users: dict[str, dict[str, list[str]]]) -> dict[str, object]:
        """The feed's ``users`` section: hashed passwords only; the passwords stay in ``member``."""
        rights: dict[str, Mapping[str, object]] = {"analyst": {"read": ["all"], "write": ["all"]},
                                                   OPERATOR: {"operator": True}, **users}
        member.passwords = {name: secrets.token_urlsafe(12) for name in rights}
        return {name: {"password_hash": hash_password(member.passwords[name]), **grants}
                for name, grants in rights.items()}

    # -- processes ---------------------------------------------------------------------------------

    def start_servers(self) -> None:
        """Every member's server, a few at a time (``PARALLEL_STARTS``); the first failure is raised once
        all attempts are over, so that ``stop`` finds every server that did start."""
        with ThreadPoolExecutor(PARALLEL_STARTS) as pool:
            for started in [pool.submit(m.prosody.start) for m in self.members.values()]:
                started.result()

    def start_bridges(self, names: Iterable[str] | None = None, timeout: float = 120.0) -> None:
        """Start the bridges of ``names`` (default: every member) at once, then wait until each is
        ready: with many members, their start-ups (imports, keys, first connection) overlap."""
        chosen = list(self.members if names is None else names)
        for name in chosen:
            self.launch_bridge(name)
        deadline = time.monotonic() + timeout
        for name in chosen:
            self.wait_ready(name, max(1.0, deadline - time.monotonic()))

    def start_bridge(self, name: str, timeout: float = 120.0) -> None:
        """Start member ``name``'s bridge and wait until it is ready: connected, subscribed and caught
        up with what its peers hold (which takes longer the more they hold)."""
        self.launch_bridge(name)
        self.wait_ready(name, timeout)

    def launch_bridge(self, name: str) -> None:
        """Start member ``name``'s bridge process, without waiting for it."""
        member = self.members[name]
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - handed to the child
        member.bridge = subprocess.Popen(
            self.bridge_command(name), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def bridge_command(self, name: str) -> list[str]:
        return [sys.executable, "-m", "xmppbridge.cli", "run", "-c", str(self.members[name].config_path)]

    def log_path(self, name: str) -> Path:
        """Where member ``name``'s bridge writes its log."""
        return self.workdir / f"{name}.log"

    def wait_ready(self, name: str, timeout: float = 30.0) -> None:
        member = self.members[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if member.bridge is not None and member.bridge.poll() is not None:
                raise RuntimeError(f"bridge {name} exited:\n{self.log_tail(name)}")
            if self.health(name).get("ready"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"bridge {name} not ready within {timeout} s:\n{self.log_tail(name)}")

    def health(self, name: str) -> dict[str, object]:
        try:
            with urllib.request.urlopen(self.members[name].metrics_url + "healthz", timeout=2) as response:
                return json.load(response)
        except OSError:
            return {}

    def stop_bridge(self, name: str, *, kill: bool = False) -> None:
        member = self.members[name]
        if member.bridge is None or member.bridge.poll() is not None:
            return
        stop_process(member.bridge, kill=kill)

    def stop(self) -> None:
        """Every bridge, then every server; each group asked at once, so that 16 members take as long
        to stop as the slowest one."""
        bridges = [m.bridge for m in self.members.values()
                   if m.bridge is not None and m.bridge.poll() is None]
        for bridge in bridges:
            bridge.send_signal(signal.SIGTERM)
        for bridge in bridges:
            wait_or_kill(bridge)
        with ThreadPoolExecutor(PARALLEL_STARTS) as pool:
            for stopped in [pool.submit(m.prosody.stop) for m in self.members.values()]:
                stopped.result()

    def log_tail(self, name: str, size: int = 4000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"

    def publish(self, name: str, *files: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``xmppbridge publish`` against member ``name``'s running bridge."""
        return subprocess.run(
            [sys.executable, "-m", "xmppbridge.cli", "publish", "-c", str(self.members[name].config_path),
             "--timeout", str(timeout), *map(str, files)],
            capture_output=True, text=True, timeout=timeout * max(1, len(files)) + 30,
        )


def stop_process(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGTERM (a clean stop), or SIGKILL to simulate a crash; SIGKILL after 15 s if it does not stop."""
    process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    wait_or_kill(process)


def wait_or_kill(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
