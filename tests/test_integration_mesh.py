"""Four members in a full mesh, on Prosody and ejabberd in turn (a, c on Prosody; b, d on ejabberd):
each publishes a known set, and every item reaches every member that may see it exactly once.

"Exactly once" is counted in each receiver's store: one entry per item, at revision 1, with one change
in the feed's change log, and nothing beyond the items the receiver may see (a's need-to-know node is
for b alone, so c and d, which follow a, must hold none of it). The same harness runs the demo with
``--members N`` and bench/bench_scale.py.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration import eventually, loopback_consortium
from tests.test_integration_federation import iodef2
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.mirrored import published_by
from xmppbridge.demo.topology import may_receive, server_kinds
from xmppbridge.policy.nodes import parse_node_name

pytestmark = pytest.mark.integration

HOSTS = {"a": 200, "b": 201, "c": 202, "d": 203}  # 127.0.<slot>.200-203; feeds 18680 + 20 * slot on
SERVERS = server_kinds("prosody,ejabberd", list(HOSTS))
# a's need-to-know is for b alone; the rest as in the demo (every member reads everything).
A_AUDIENCES = {"partner": "all", "need-to-know": ["b"], "default": "all", "private": []}
CATEGORIES = (("public", "reporting"), ("partner", "mitigation"), ("need-to-know", "mitigation"),
              ("partner", "watch"), ("public", "mitigation"))
Held = dict[str, Counter[tuple[str, str]]]  # receiver -> (service, item id) -> stored entries


def documents(directory: Path, member: str) -> list[Path]:
    """The known set member ``member`` publishes: one incident per category, IDs M-<MEMBER>-<n>."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (restriction, purpose) in enumerate(CATEGORIES):
        path = directory / f"{member}-{i}.xml"
        path.write_bytes(iodef2(f"M-{member.upper()}-{i}", restriction=restriction, purpose=purpose)
                         .replace(b"csirt.a.test", f"csirt.{member}.test".encode()))
        files.append(path)
    return files


def held(consortium: Consortium) -> tuple[Held, list[str]]:
    """What each member stores from the others, and every entry stored more than once over (a revision
    beyond 1, or more than one change in the change log) or quarantined."""
    stored: Held = {}
    faults = []
    for name, member in consortium.members.items():
        conn = sqlite3.connect(member.store_path, timeout=30)
        try:
            rows = conn.execute("SELECT service, item_id, revision, (SELECT count(*) FROM changes"
                                " WHERE changes.entry_id = entries.id) FROM entries WHERE origin = 'remote'")
            stored[name] = Counter()
            for service, item_id, revision, changes in rows:
                stored[name][(service, item_id)] += 1
                if revision != 1 or changes != 1:
                    faults.append(f"{name}: {item_id} at revision {revision} with {changes} changes")
            faults += [f"{name}: quarantined {item_id} ({reason})" for item_id, reason in
                       conn.execute("SELECT item_id, reason FROM rejects")]
        finally:
            conn.close()
    return stored, faults


def test_four_members_in_a_full_mesh_converge_with_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    for tool in ("prosody", "ejabberdctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    consortium = loopback_consortium(tmp_path, HOSTS, feed_port_base=18680, discovery_interval=1.0,
                                     servers=SERVERS)
    consortium.write_files(audiences={"a": A_AUDIENCES})
    try:
        consortium.start_servers()
        consortium.start_bridges(timeout=180)
        with ThreadPoolExecutor(len(HOSTS)) as pool:
            results = dict(zip(HOSTS, pool.map(
                lambda name: consortium.publish(name, *documents(tmp_path / "documents", name)), HOSTS),
                strict=True))
        for name, result in results.items():
            assert result.returncode == 0, result.stdout + result.stderr + consortium.log_tail(name)

        audiences = {name: consortium.audiences(name) for name in HOSTS}
        expected: Held = {name: Counter() for name in HOSTS}
        for publisher, result in results.items():
            items = published_by(result.stdout)
            assert len(items) == len(CATEGORIES), result.stdout
            for item in items:
                category = parse_node_name("iodef", item.node)
                assert category is not None
                for receiver in may_receive(consortium.topology, audiences, publisher, *category):
                    expected[receiver][(item.service, item.item_id)] = 1
        # By hand, what may_receive says: everyone gets the others' items but a's need-to-know one.
        assert {r: sum(c.values()) for r, c in expected.items()} == {"a": 15, "b": 15, "c": 14, "d": 14}
        assert ("pubsub.a.test", "csirt.a.test/M-A-2") in expected["b"]
        assert ("pubsub.a.test", "csirt.a.test/M-A-2") not in expected["c"]

        def converged() -> bool:
            stored = held(consortium)[0]
            return all(stored[r] >= expected[r] for r in HOSTS)

        eventually(converged, timeout=180, interval=0.5, what="every member to hold every item it may see")
        # A few discovery and check rounds more (1 s each): a late duplicate or a stray item would land now.
        time.sleep(5)
        stored, faults = held(consortium)
        assert faults == []
        for receiver in HOSTS:
            assert stored[receiver] == expected[receiver], receiver  # each exactly once, nothing more
    finally:
        consortium.stop()
