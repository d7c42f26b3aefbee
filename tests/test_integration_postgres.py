"""B's bridge on PostgreSQL (store.url), federated with A's on SQLite over real Prosody servers: what A
publishes reaches B's PostgreSQL store, verified, and B's feed serves it from there."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.integration import eventually, loopback_consortium, running
from tests.postgres import Cluster
from xmppbridge.demo.consortium import Consortium
from xmppbridge.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster) -> Iterator[Consortium]:
    consortium = loopback_consortium(tmp_path_factory.mktemp("pg"), {"a": 152, "b": 153},
                                     feed_port_base=18621, discovery_interval=1.0)
    consortium["b"].store_url = pg_cluster.create_database("member_b")
    consortium.write_files()
    with running(consortium):
        yield consortium
    pg_cluster.drop_database("member_b")


def test_b_on_postgresql_mirrors_what_a_publishes_and_serves_it(consortium: Consortium,
                                                                tmp_path: Path) -> None:
    b = consortium["b"]
    assert b.store_url and "url: postgresql://" in b.config_path.read_text()
    samples = sorted(SAMPLES.glob("*.xml"))
    for sample in samples:
        assert consortium.publish("a", sample).returncode == 0
    with closing(Store(consortium["a"].store)) as ours:
        published = {(e.node, e.item_id, e.xml) for e in ours.entries(limit=1000) if e.origin == "local"}
    shared = {item for item in published if "/private/" not in item[0]}  # A's audiences: every member

    def mirrored() -> set[tuple[str, str, bytes]]:
        with closing(Store(b.store)) as theirs:
            return {(e.node, e.item_id, e.xml) for e in theirs.entries(limit=1000) if e.origin == "remote"}

    assert eventually(lambda: mirrored() >= shared and mirrored(), what="A's items in B's PostgreSQL store",
                      timeout=60) >= shared
    assert mirrored() <= published  # nothing B was not sent, stored once each (a set of item ids)
    with closing(Store(b.store)) as theirs:
        assert theirs.backend == "postgresql"
        assert theirs.count_rejects() == 0
        assert theirs.state()["connection"][0] == "online"
    with urllib.request.urlopen(f"http://127.0.0.1:{b.feed_port}/healthz", timeout=10) as reply:
        assert json.load(reply) == {"status": "up"}
    with urllib.request.urlopen(f"http://127.0.0.1:{b.feed_port}/feeds/public", timeout=10) as reply:
        feed = reply.read().decode()
    assert feed.count("<entry") >= 1 and "pubsub.a.test" in feed
