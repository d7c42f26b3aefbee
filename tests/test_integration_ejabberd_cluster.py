"""A member's XMPP server is a two-node ejabberd cluster (pubsub in PostgreSQL); the node the bridges are
connected to dies in the middle of a burst (kill -9 of its Erlang VM), and nothing is lost or doubled
(issue 17, README.md "ejabberd cluster").

The cluster serves a.test. Two bridges connect to it, both listing both nodes in component.servers and
both on node 1 at first: bridge.a.test publishes the burst from its outbox to pubsub.a.test, and
bridge.m.test (member m, whose own component and pubsub service the same cluster hosts, so that no s2s
link is in the way) mirrors a's nodes. After the kill both fail over to node 2: a publishes what was
left in its outbox, m catches up from the nodes' history what it missed. Counted exactly, at m and in
the cluster's pubsub tables, with the bytes a signed. Then a subscription left pending with no form on
its way (as after an approval lost with the node) is asked for again and approved.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

import psycopg
import pytest
import yaml

from tests.integration import eventually, loopback_consortium
from tests.postgres import Cluster
from tests.test_integration_faults import RESTRICTIONS, Key, document
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.ejabberd_cluster import EjabberdCluster, SqlDatabase, load_schema
from xmppbridge.paths.publish import Publisher
from xmppbridge.signing.keys import load_identity
from xmppbridge.store import Store

pytestmark = pytest.mark.integration

SLOT = int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))
NODES = [f"127.0.{SLOT}.250", f"127.0.{SLOT}.251"]
BURST = 400
DATABASE = "ejabberd_cluster"


@dataclass
class Setup:
    consortium: Consortium
    cluster: EjabberdCluster
    database_url: str
    servers: dict[str, list[str]]  # member -> its component.servers: node 1's address, node 2's

    def store(self, member: str) -> Store:
        return Store(self.consortium[member].store_path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster) -> Iterator[Setup]:
    if shutil.which("ejabberdctl") is None:
        pytest.fail("ejabberd is not installed: run `make test`, which installs it")
    # The bridges' metrics listeners: a on node 1's address, m on .252 (nothing else listens there).
    consortium = loopback_consortium(tmp_path_factory.mktemp("ejcluster"), {"a": 250, "m": 252},
                                     feed_port_base=18661, discovery_interval=1.0)
    consortium.write_files(subscriptions={"a": [], "m": ["a"]})
    url = pg_cluster.create_database(DATABASE)
    load_schema(url)
    cluster = EjabberdCluster("a.test", NODES, consortium.workdir / "cluster", consortium.secret,
                              SqlDatabase(pg_cluster.host, pg_cluster.port, DATABASE, "xmppbridge"),
                              components=("bridge.a.test", "bridge.m.test"),
                              pubsub_hosts=("pubsub.a.test", "pubsub.m.test"))
    servers = {name: cluster.component_addresses(consortium[name].bridge_jid) for name in consortium.members}
    for name in consortium.members:
        path = consortium[name].config_path
        config = yaml.safe_load(path.read_text())
        config["component"].pop("server")
        config["component"]["servers"] = servers[name]
        config.pop("rooms")  # the cluster has rooms.a.test only; rooms are not what this test is about
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        cluster.start()
        for name in consortium.members:
            consortium.start_bridge(name, timeout=120)
        yield Setup(consortium, cluster, url, servers)
    finally:
        for name in consortium.members:
            consortium.stop_bridge(name)
        cluster.stop()
        pg_cluster.drop_database(DATABASE)


def submit_burst(setup: Setup, tag: str, count: int = BURST) -> set[Key]:
    a = setup.consortium["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    keys: set[Key] = set()
    with closing(setup.store("a")) as outbox:
        publisher = Publisher(outbox, identity, prefix="iodef", max_bytes=400_000)
        for i in range(count):
            for accepted in publisher.submit(document(f"{tag}-{i:05d}", RESTRICTIONS[i % 4]), source="test"):
                keys.add((accepted.item.node, accepted.item.item_id))
    return keys


def mirrored_at_m(setup: Setup, tag: str) -> list[Key]:
    """One key per entry m holds: an item stored twice would show twice."""
    return [key for key, _ in documents(setup, "m", tag)]


def documents(setup: Setup, member: str, tag: str) -> list[tuple[Key, bytes]]:
    """The signed documents of burst ``tag`` in ``member``'s store: a's own, or those m mirrored from a."""
    origin = "local" if member == "a" else "remote"
    with closing(setup.store(member)) as s:
        return [((e.node, e.item_id), e.xml) for e in s.entries(limit=1_000_000)
                if e.origin == origin and e.service == "pubsub.a.test" and e.incident.id.startswith(tag)]


def outbox_depth(setup: Setup) -> int:
    with closing(setup.store("a")) as s:
        return s.outbox_depth()


def items_in_the_cluster(setup: Setup) -> list[Key]:
    """What ejabberd holds on pubsub.a.test, read from its SQL tables (pg.sql)."""
    with psycopg.connect(setup.database_url) as conn:
        rows = conn.execute("SELECT n.node, i.itemid FROM pubsub_item i JOIN pubsub_node n"
                            " ON i.nodeid = n.nodeid WHERE n.host = 'pubsub.a.test'").fetchall()
    return [(node, item) for node, item in rows]


def subscription_of_m(setup: Setup, node: str) -> str:
    """m's subscription to ``node`` of pubsub.a.test as the cluster's SQL table holds it: ``s:<subid>``
    (subscribed), ``p:<subid>`` (pending)."""
    with psycopg.connect(setup.database_url) as conn:
        row = conn.execute("SELECT s.subscriptions FROM pubsub_state s JOIN pubsub_node n"
                           " ON s.nodeid = n.nodeid WHERE n.host = 'pubsub.a.test' AND n.node = %s"
                           " AND s.jid = 'bridge.m.test'", (node,)).fetchone()
    return row[0] if row else ""


def status(setup: Setup, member: str) -> str:
    result = subprocess.run([sys.executable, "-m", "xmppbridge.cli", "status", "-c",
                             str(setup.consortium[member].config_path)],
                            capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def test_the_nodes_form_one_cluster_and_the_bridges_start_on_the_first(setup: Setup) -> None:
    listed = setup.cluster.nodes[1].ctl("list_cluster")
    assert all(f"'ejabberd@{ip}'" in listed for ip in NODES)
    for member in ("a", "m"):
        assert f"online via {setup.servers[member][0]} " in status(setup, member)


def test_node_loss_mid_burst_loses_nothing_and_doubles_nothing(setup: Setup) -> None:
    # The burst is submitted beside the test, so that the kill falls in its middle however fast or slow
    # the machine is: items are in a's outbox, in flight to node 1, and still to be submitted.
    with ThreadPoolExecutor(1) as submitter:
        submitting = submitter.submit(submit_burst, setup, "C1")
        eventually(lambda: len(mirrored_at_m(setup, "C1")) >= 50 or submitting.done(), timeout=120,
                   interval=0.05, what="m to start mirroring the burst")
        setup.cluster.nodes[0].kill()  # kill -9 of node 1's beam process, as a crash
        assert len(mirrored_at_m(setup, "C1")) < BURST, "the burst was over before the kill"
        expected = submitting.result()
    assert len(expected) == BURST

    # Both bridges fail over to node 2; a drains its outbox there and m catches up from the history.
    eventually(lambda: outbox_depth(setup) == 0, timeout=180, interval=0.2, what="a's outbox to drain")
    try:
        eventually(lambda: set(mirrored_at_m(setup, "C1")) >= expected, timeout=180, interval=0.5,
                   what="m to mirror the whole burst")
    except AssertionError as exc:  # say whether the items were lost or only late
        missing = expected - set(mirrored_at_m(setup, "C1"))
        stored = missing & set(items_in_the_cluster(setup))
        raise AssertionError(f"{exc}: {len(missing)} items missing at m, {len(stored)} of them in the "
                             f"cluster's tables (e.g. {sorted(missing)[:3]})") from None
    at_m = mirrored_at_m(setup, "C1")
    assert set(at_m) == expected and len(at_m) == len(expected), "duplicates at m"
    assert dict(documents(setup, "m", "C1")) == dict(documents(setup, "a", "C1"))  # the bytes a signed
    with closing(setup.store("m")) as s:
        assert not [r for r in s.rejects(limit=10_000) if (r.node, r.item_id) in expected]
        revisions = {e.revision for e in s.entries(limit=1_000_000) if e.incident.id.startswith("C1")}
    assert revisions == {1}  # each item stored once, not once per delivery
    in_cluster = items_in_the_cluster(setup)
    assert set(in_cluster) == expected and len(in_cluster) == len(expected)
    with closing(setup.store("a")) as s:
        published = [e for e in s.entries(limit=1_000_000) if e.origin == "local"
                     and e.incident.id.startswith("C1")]
    assert {(e.node, e.item_id) for e in published} == expected and {e.revision for e in published} == {1}

    for member in ("a", "m"):
        first, second = setup.servers[member]
        assert f"online via {second} " in status(setup, member)
        log = setup.consortium.log_tail(member, 1_000_000)
        assert f"lost the connection to {first}" in log and f"reconnected to {second}" in log


def test_a_subscription_left_pending_is_asked_for_again(setup: Setup) -> None:
    """As after an approval lost with a node, or a request made while the owner was offline (ejabberd's
    SQL backend then lists no pending request on get-pending): m's subscription is pending in the
    cluster's tables with no form on its way to a. m's next renewal makes the request anew, and a,
    whose audience for the node names m, approves it."""
    expected = submit_burst(setup, "C2", count=4)  # one item per node: they exist and m follows them
    eventually(lambda: set(mirrored_at_m(setup, "C2")) >= expected, timeout=120, interval=0.5,
               what="m to mirror C2")
    node = "iodef/need-to-know/mitigation"
    eventually(lambda: subscription_of_m(setup, node).startswith("s:"), timeout=60, what="m subscribed")
    approvals = setup.consortium.log_tail("a", 1_000_000).count(f"approval bridge.m.test on {node} approved")
    with psycopg.connect(setup.database_url) as conn:
        conn.execute("UPDATE pubsub_state SET subscriptions = replace(subscriptions, 's:', 'p:')"
                     " WHERE jid = 'bridge.m.test' AND nodeid = (SELECT nodeid FROM pubsub_node"
                     " WHERE host = 'pubsub.a.test' AND node = %s)", (node,))
    eventually(lambda: subscription_of_m(setup, node).startswith("s:"), timeout=120, interval=0.5,
               what="m's subscription approved again")
    log = setup.consortium.log_tail("a", 1_000_000)
    assert log.count(f"approval bridge.m.test on {node} approved") > approvals
