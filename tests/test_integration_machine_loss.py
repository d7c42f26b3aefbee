"""Machine loss of the active `xmppbridge run` instance (issue 16), on real federated Prosody with B on
PostgreSQL: B's active instance runs on a "machine" of its own (tests/netns.py), whose link is cut
silently mid-burst, with no FIN or RST reaching PostgreSQL or Prosody. The standby, on the host, must
take the lease once the server finds the lease session dead, get its component connection accepted while
Prosody still believes in the dead one, and mirror the rest; the cut-off instance must fence; once the
link is back, it stands by, and nothing was lost or stored twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import psycopg
import pytest

from tests.integration import eventually, loopback_consortium
from tests.netns import Machine, unavailable
from tests.postgres import Cluster
from tests.test_integration_failover import active
from tests.test_integration_faults import RESTRICTIONS, document
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.instances import Instance, instances
from xmppbridge.lease import lease_key, lock_halves
from xmppbridge.paths.publish import Publisher
from xmppbridge.signing.keys import load_identity
from xmppbridge.store import Store

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bool(reason := unavailable()), reason=reason or "")]

HOSTS = {"a": 186, "b": 187}  # 127.0.<slot>.186-187
FEED_PORT_BASE = 18941  # + 20 * slot; the instances take the next ports
BURST = 400
FENCED = "stopping at once (fencing)"  # leadership.Leadership's line when it fences


@dataclass
class Setup:
    consortium: Consortium
    machine: Machine
    lost: Instance  # b1, on the machine that is lost
    heir: Instance  # b2, on the host


@pytest.fixture
def setup(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster) -> Iterator[Setup]:
    consortium = loopback_consortium(tmp_path_factory.mktemp("machine-loss"), HOSTS,
                                     feed_port_base=FEED_PORT_BASE, discovery_interval=1.0)
    for name in ("a", "b"):
        consortium[name].store_url = pg_cluster.create_database(f"machine_loss_{name}")
    consortium.write_files(subscriptions={"a": [], "b": ["a"]})
    base = consortium["b"].feed_port
    b1, b2 = instances(consortium, "b", 2, feed_port=base + 2, metrics_port=base + 1002)
    machine = Machine(0)
    try:
        machine.open()
        b1 = machine.run(b1)
        consortium.start_servers()
        consortium.start_bridge("a")
        b1.start()
        b1.wait_serving()
        assert active([b1]) is b1  # the machine's instance takes the lease first
        b2.start()
        assert b2.wait_serving()["role"] == "standby"
        yield Setup(consortium, machine, b1, b2)
    finally:
        machine.restore()  # so that b1 hears its SIGTERM's consequences and stops cleanly
        for each in (b1, b2):
            each.stop()
        machine.close()
        consortium.stop()
        for name in ("a", "b"):
            pg_cluster.drop_database(f"machine_loss_{name}")
    assert not [each.name for each in (b1, b2) if each.running()]


def submit(setup: Setup, tag: str, count: int) -> set[tuple[str, str]]:
    a = setup.consortium["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    keys = set()
    with closing(Store(a.store)) as outbox:
        publisher = Publisher(outbox, identity, prefix="iodef", max_bytes=400_000)
        for i in range(count):
            for accepted in publisher.submit(document(f"{tag}-{i:05d}", RESTRICTIONS[i % 4]), source="test"):
                keys.add((accepted.item.node, accepted.item.item_id))
    return keys


def mirrored(setup: Setup, tag: str) -> list[tuple[str, str]]:
    with closing(Store(setup.consortium["b"].store)) as s:
        return [(e.node, e.item_id) for e in s.entries(limit=1_000_000)
                if e.service == "pubsub.a.test" and e.incident.id.startswith(tag)]


def lock_holders(setup: Setup) -> list[str]:
    """The application names of the sessions holding B's advisory lock, as the server sees them."""
    high, low = lock_halves(lease_key(setup.consortium["b"].bridge_jid))
    with psycopg.connect(setup.consortium["b"].store, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
            " AND l.objsubid = 1", (high, low)).fetchall()
    return [name for (name,) in rows]


def assert_once(setup: Setup, tag: str, expected: set[tuple[str, str]]) -> None:
    eventually(lambda: set(mirrored(setup, tag)) >= expected, timeout=180, interval=0.5,
               what=f"B to mirror all of {tag}")
    at_b = mirrored(setup, tag)
    assert len(at_b) == len(set(at_b)) == len(expected), "duplicates or strays at B"


def test_machine_loss_of_the_mirroring_instance_mid_burst(setup: Setup) -> None:
    lost, heir, machine = setup.lost, setup.heir, setup.machine
    expected = submit(setup, "M1", BURST)
    eventually(lambda: len(mirrored(setup, "M1")) >= 50, timeout=120, interval=0.05,
               what="B to start mirroring")
    machine.cut()
    # Silent: the server has heard nothing (no FIN, no RST), so the lost machine's session still holds
    # the lease, until the keepalives the lease session set find it dead.
    assert lock_holders(setup) == [f"xmppbridge lease {lost.name}"]
    assert len(mirrored(setup, "M1")) < len(expected)
    eventually(lambda: lock_holders(setup) == [f"xmppbridge lease {heir.name}"], timeout=60, interval=0.1,
               what="the server to free the lost machine's lease and the standby to take it")
    assert active([heir]) is heir  # connected (Prosody accepted its component) and caught up
    assert_once(setup, "M1", expected)
    # The cut-off instance fenced itself: it stopped acting once it could not confirm its lease, before
    # the server could free the lease for the standby (both logs are on this host's clock).
    fenced, taken = lost.logged_at(FENCED), heir.logged_at("took the lease")
    assert fenced is not None and taken is not None and fenced < taken, (fenced, taken, lost.log_tail())
    assert machine.dropped() > 0  # what it and the servers sent after the cut went nowhere

    machine.restore()  # the machine comes back: its instance finds the lease taken and stands by
    eventually(lambda: lost.health().get("role") == "standby", timeout=60, interval=0.2,
               what="the returned instance to answer as the standby")
    more = submit(setup, "M2", 40)
    assert_once(setup, "M2", more)
    assert_once(setup, "M1", expected)
    assert active([lost, heir]) is heir
    # From its fencing on, the returned instance has mirrored nothing and not taken the lease again.
    after = lost.log_path.read_text(errors="replace").split(FENCED, 1)[1]
    assert "took the lease" not in after and "mirrored item" not in after, after[-3000:]
