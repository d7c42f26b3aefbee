"""Two (or more) ejabberd nodes in one cluster serving one domain, pubsub in PostgreSQL, on loopback: the
fault-injection harness of the cluster test (README.md, "ejabberd cluster").

Each node is a ``demo.ejabberd.EjabberdServer`` on its own loopback address with the shipped
``deploy/ejabberd/cluster.yml.in``. Erlang distribution, which a cluster needs between its nodes:

- node names ``ejabberd@<ip>``: long names that need no name resolution;
- one cookie per cluster, random, given to each node with ``-setcookie``, so no other Erlang node on
  the machine (another test's ejabberd, whose cookie is the ejabberd user's ``~/.erlang.cookie``)
  can join or talk to it;
- no epmd: ``ERL_DIST_PORT`` makes ejabberdctl start every node with ``-erl_epmd_port <port>
  -start_epmd false`` (see /usr/sbin/ejabberdctl), so each node listens on ``<its ip>:DIST_PORT`` and
  expects every other node on the same port of that node's address. Nothing listens on epmd's port
  4369 and nothing is left running after ``stop``.

The second node joins with ``ejabberdctl join_cluster ejabberd@<first ip>`` (ejabberd docs,
"Clustering"): Mnesia's tables are copied to it and ejabberd restarts on it. pubsub is not in
Mnesia but in the SQL database, so both nodes serve the same nodes and items.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from xmppbridge.demo.ejabberd import EjabberdError, EjabberdServer
from xmppbridge.demo.server import port_open

# Debian's ejabberd 23.01 ships the schema but does not load it (automatic schema updates came in 23.10).
PG_SCHEMA = Path("/usr/share/ejabberd/sql/pg.sql")


@dataclass(frozen=True)
class SqlDatabase:
    """The PostgreSQL database the cluster keeps pubsub in (ejabberd's sql_* options)."""

    host: str
    port: int
    database: str
    user: str
    password: str = ""


@dataclass
class ClusterNode(EjabberdServer):
    """One node: the cluster's config template, its own node name, the cluster's cookie and database."""

    sql: SqlDatabase | None = None
    cookie: str = ""
    components: tuple[str, ...] = ()  # component JIDs, each on its port (``component_port`` + i), ``secret``
    pubsub_hosts: tuple[str, ...] = ()

    config_template: ClassVar[str] = "cluster.yml"

    @property
    def node_name(self) -> str:
        return f"ejabberd@{self.ip}"

    def template_values(self, home: Path) -> dict[str, object]:
        assert self.sql is not None
        components = self.components or (self.bridge_jid,)
        return {**super().template_values(home),
                "node": self.node_name, "erl_options": f"-setcookie {self.cookie}",
                "sql_host": self.sql.host, "sql_port": self.sql.port, "sql_database": self.sql.database,
                "sql_user": self.sql.user, "sql_password": self.sql.password,
                "components": "".join(_component_listener(self.ip, self.component_port + i, jid, self.secret)
                                      for i, jid in enumerate(components)).rstrip("\n"),
                "bridges": "".join(f'      - "{jid}"\n' for jid in components).rstrip("\n"),
                "pubsub_hosts": "".join(f'      - "{jid}"\n' for jid in self.pubsub_hosts
                                        or (self.pubsub_jid,)).rstrip("\n")}

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run an ejabberdctl command against this node; its output, or EjabberdError."""
        result = subprocess.run(self._ctl(*args), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise EjabberdError(f"ejabberdctl {' '.join(args)} on {self.node_name} failed: "
                                f"{result.stdout}{result.stderr}")
        return result.stdout

    def listening(self) -> bool:
        return all(port_open(self.ip, port) for port in (self.component_port, self.s2s_port, self.c2s_port))


@dataclass
class EjabberdCluster:
    """``ips[0]`` starts first; every other node joins it. ``components`` and ``pubsub_hosts`` default to
    the domain's bridge and pubsub service (a test may add a second bridge on the same cluster)."""

    domain: str
    ips: list[str]
    workdir: Path
    secret: str
    sql: SqlDatabase
    components: tuple[str, ...] = ()
    pubsub_hosts: tuple[str, ...] = ()
    nodes: list[ClusterNode] = field(init=False)

    def __post_init__(self) -> None:
        cookie = secrets.token_hex(16)
        self.nodes = [ClusterNode(self.domain, ip, self.workdir / f"node{i + 1}", self.secret, sql=self.sql,
                                  cookie=cookie, components=self.components, pubsub_hosts=self.pubsub_hosts)
                      for i, ip in enumerate(self.ips)]

    def component_addresses(self, jid: str | None = None) -> list[str]:
        """``host:port`` of component ``jid``'s port (default: the first) on each node, in order: that
        bridge's ``component.servers``."""
        offset = (self.components or (f"bridge.{self.domain}",)).index(jid) if jid else 0
        return [f"{node.ip}:{node.component_port + offset}" for node in self.nodes]

    def start(self, timeout: float = 90.0) -> None:
        """Start every node and join each to the first; stop all of them should anything fail."""
        try:
            first, *others = self.nodes
            for node in self.nodes:
                node.start(timeout)
            for node in others:
                node.ctl("join_cluster", first.node_name, timeout=timeout)
            self.wait_joined(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_joined(self, timeout: float) -> None:
        """Until the first node lists every node as running and each node listens again (joining restarts
        ejabberd on the node that joins)."""
        names = {node.node_name for node in self.nodes}
        deadline = time.monotonic() + timeout
        listed = ""
        while time.monotonic() < deadline:
            try:
                listed = self.nodes[0].ctl("list_cluster", timeout=30)
            except (EjabberdError, subprocess.TimeoutExpired):
                listed = ""
            running = {name.strip("'") for name in listed.split()}  # one quoted atom per line
            if names <= running and all(node.listening() for node in self.nodes):
                return
            time.sleep(0.5)
        raise EjabberdError(f"the cluster of {self.domain} did not form within {timeout} s "
                            f"(list_cluster: {listed!r}): {self.nodes[-1]._log_tail()}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


def _component_listener(ip: str, port: int, jid: str, secret: str) -> str:
    return (f"  -\n    port: {port}\n    ip: \"{ip}\"\n    module: ejabberd_service\n"
            f"    max_stanza_size: 524288\n    hosts:\n      \"{jid}\":\n        password: \"{secret}\"\n")


def load_schema(url: str) -> None:
    """Create ejabberd's tables in the (empty) PostgreSQL database at ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PG_SCHEMA.read_text())  # type: ignore[arg-type] - a trusted file of the package
