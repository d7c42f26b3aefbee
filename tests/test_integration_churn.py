"""Membership churn in a running consortium of four domains, a, b and c on Prosody and d on ejabberd, one
scenario after another on the same consortium (the module's fixture; each test goes on from where the one
before left it):

1. d joins: a, b and c add it to their registries and reload (SIGHUP); d catches up with what their
   nodes hold that its audience may read, and they receive what d publishes, none of them restarted.
2. b rotates its key (``xmppbridge keygen``): switching before its own entry pins the new certificate is
   refused; every registry pins the new certificate beside the old one (reload), then b points its
   ``signing:`` at the new key and reloads in the middle of an AtomPub burst that its bridge signs, never
   restarting; every item, signed before or after, is mirrored by the others with the bytes it was
   signed with, and nothing is quarantined; then the old certificate is retired (reload) and nothing
   changes.
3. b's server is down for a while: the others' outboxes drain and their mirrors fill with each other's
   items while it is away; once it is back, b holds everything it missed and they hold what b queued.
4. c leaves: the others drop it from their registries (reload), which revokes it at the source (its
   subscriptions to their nodes cancelled, its affiliation removed) and unsubscribes them from its
   nodes. c gets nothing new, the others go on, and nothing c still publishes reaches them; restarted,
   c keeps what it mirrored before (d's ejabberd lists its nodes to c as empty: INTEROP.md).

What each member must hold is counted exactly (``Ledger``): one entry per item it may read (its
publisher's audiences, while both are members), each at revision 1 with one change, and nothing
quarantined anywhere.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from slixmpp import ComponentXMPP
from slixmpp.exceptions import IqError, IqTimeout

from tests.integration import eventually, loopback_consortium
from tests.test_integration_federation import iodef2
from xmppbridge.config.settings import load_config
from xmppbridge.demo.consortium import Consortium, Member
from xmppbridge.demo.mirrored import published_by
from xmppbridge.paths.publish import Publisher
from xmppbridge.policy.nodes import parse_node_name
from xmppbridge.signing.keys import fingerprint
from xmppbridge.store import Store

pytestmark = pytest.mark.integration

HOSTS = {"a": 14, "b": 15, "c": 16, "d": 17}  # 127.0.<slot>.14-17
# d, the member that joins, runs ejabberd: it catches up from Prosody peers, they follow its ejabberd
# service, and it revokes the leaver at its own nodes.
SERVERS = {"d": "ejabberd"}
# a's need-to-know is for b alone: d, joining, must not catch up with it; the others share everything.
A_AUDIENCES = {"partner": "all", "need-to-know": ["b"], "default": "all", "private": []}
CATEGORIES = (("public", "reporting"), ("partner", "mitigation"), ("need-to-know", "mitigation"),
              ("partner", "watch"))
NON_PUBLIC_NODES = ("iodef/partner/mitigation", "iodef/partner/watch", "iodef/need-to-know/mitigation")
Item = tuple[str, str]  # (service, item id)


@dataclass
class Ledger:
    """The consortium and what each member must hold: ``present`` are the members in each other's
    registries; an item goes to those of them that its publisher's audience names."""

    consortium: Consortium
    workdir: Path
    present: set[str]
    newcomer: dict[str, Any]  # d's registry entry, which the operators add to theirs when it joins
    expected: dict[str, set[Item]] = field(default_factory=dict)
    runs: int = 0
    steps: list[str] = field(default_factory=list)  # the scenarios passed so far, in order

    def step(self, name: str, after: str | None) -> None:
        """Scenario ``name`` goes on from where ``after`` left the consortium: run the module whole."""
        if (self.steps[-1] if self.steps else None) != after:
            pytest.fail(f"the {name} step goes on from a passed {after} step; run the whole module "
                        f"(passed so far: {self.steps})")

    def expect(self, publisher: str, service: str, node: str, item_id: str) -> None:
        category = parse_node_name("iodef", node)
        assert category is not None, node
        if publisher not in self.present:
            return  # not a member any more: nobody follows it
        audience = self.consortium.audiences(publisher).of(*category)
        for receiver in self.present - {publisher}:
            if audience.open or receiver in audience.members:
                self.expected.setdefault(receiver, set()).add((service, item_id))

    def publish(self, name: str, restrictions: Iterable[tuple[str, str]] = CATEGORIES) -> list[Item]:
        """``xmppbridge publish`` at ``name``: it returns once the bridge has published every document, so
        success means ``name``'s outbox drained them."""
        self.runs += 1
        directory = self.workdir / "documents" / f"{name}-{self.runs}"
        directory.mkdir(parents=True)
        files = []
        for i, (restriction, purpose) in enumerate(restrictions):
            files.append(directory / f"{i}.xml")
            files[-1].write_bytes(document(name, f"R{self.runs}-{i}", restriction, purpose))
        result = self.consortium.publish(name, *files)
        assert result.returncode == 0, result.stdout + result.stderr + self.consortium.log_tail(name)
        published = published_by(result.stdout)
        assert len(published) == len(files), result.stdout
        for item in published:
            self.expect(name, item.service, item.node, item.item_id)
        return [(item.service, item.item_id) for item in published]

    def enqueue(self, name: str, count: int, tag: str) -> list[Item]:
        """Queue ``count`` partner items in ``name``'s outbox as ``publish`` does, signed with the key its
        config names now, without waiting: for a burst, and for a member whose bridge cannot publish."""
        member = self.consortium[name]
        with closing(Store(member.store_path)) as store:
            publisher = Publisher.for_config(store, load_config(member.config_path))
            accepted = [a for i in range(count) for a in publisher.enqueue(
                publisher.prepare(document(name, f"{tag}-{i}", "partner", "mitigation")), source="test")]
        for a in accepted:
            self.expect(name, member.pubsub_jid, a.item.node, a.item.item_id)
        return [(member.pubsub_jid, a.item.item_id) for a in accepted]

    def holds(self, names: Iterable[str], *, but: Iterable[Item] = ()) -> bool:
        """Each of ``names`` holds everything it must, ``but`` those items (not published yet)."""
        stored = held(self.consortium, names)[0]
        return all(stored[name] >= self.expected.get(name, set()) - set(but) for name in names)

    def check_exact(self, names: Iterable[str]) -> None:
        """Each of ``names`` holds exactly what it must, once each, and nobody quarantined anything."""
        stored, faults = held(self.consortium, names)
        assert faults == []
        for name in names:
            assert stored[name] == self.expected.get(name, set()), name


def document(member: str, tag: str, restriction: str, purpose: str) -> bytes:
    return iodef2(f"CHURN-{member.upper()}-{tag}", restriction=restriction, purpose=purpose).replace(
        b"csirt.a.test", f"csirt.{member}.test".encode())


def held(consortium: Consortium, names: Iterable[str]) -> tuple[dict[str, set[Item]], list[str]]:
    """What each member stores from the others, and what is wrong: an entry stored more than once over
    (a revision beyond 1, more than one change) or anything quarantined."""
    stored: dict[str, set[Item]] = {}
    faults = []
    for name in names:
        with closing(sqlite3.connect(consortium[name].store_path, timeout=30)) as conn:
            rows = conn.execute("SELECT service, item_id, revision, (SELECT count(*) FROM changes"
                                " WHERE changes.entry_id = entries.id) FROM entries WHERE origin = 'remote'")
            stored[name] = set()
            for service, item_id, revision, changes in rows:
                stored[name].add((service, item_id))
                if revision != 1 or changes != 1:
                    faults.append(f"{name}: {item_id} at revision {revision} with {changes} changes")
            faults += [f"{name}: quarantined {item_id} ({reason})" for item_id, reason in
                       conn.execute("SELECT item_id, reason FROM rejects")]
    return stored, faults


def signers(consortium: Consortium, receiver: str, items: Iterable[Item]) -> dict[str, int]:
    """How many of ``items`` the receiver stores per signing certificate (fingerprint)."""
    wanted = {item_id for _, item_id in items}
    with closing(sqlite3.connect(consortium[receiver].store_path, timeout=30)) as conn:
        rows = conn.execute("SELECT item_id, signer_fingerprint FROM entries WHERE origin = 'remote'")
        counts: dict[str, int] = {}
        for item_id, signer in rows:
            if item_id in wanted:
                counts[signer] = counts.get(signer, 0) + 1
    return counts


def edit_config(consortium: Consortium, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = consortium[name].config_path
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def reload(consortium: Consortium, names: Iterable[str],
           change: Callable[[dict[str, Any]], None]) -> dict[str, str]:
    """What an operator does for a membership change: edit the registry of each of ``names``, then
    SIGHUP its bridge (``systemctl reload``); wait until each has run the reload's reconcile round and
    applied the new trust and subscriptions. Each bridge's log lines of the reload, by member."""
    starts = {}
    for name in names:
        edit_config(consortium, name, change)
        starts[name] = consortium.log_path(name).stat().st_size
        member = consortium[name]
        assert member.bridge is not None
        member.bridge.send_signal(signal.SIGHUP)
    for name in names:
        done = re.compile(rf"reconciled \d+ nodes on {re.escape(consortium[name].pubsub_jid)} \(reload\)")
        eventually(lambda n=name, d=done: d.search(log_since(consortium, n, starts[n])), timeout=60,
                   what=f"{name}'s reload round")
    logs = {name: log_since(consortium, name, starts[name]) for name in names}
    for log in logs.values():
        assert "needs a restart" not in log and "keeping the running config" not in log, log
    return logs


def log_since(consortium: Consortium, name: str, start: int) -> str:
    with open(consortium.log_path(name), "rb") as log:
        log.seek(start)
        return log.read().decode(errors="replace")


def without(name: str) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        config["members"] = [m for m in config["members"] if m["name"] != name]
    return change


def require_servers() -> None:
    for tool in ("prosody", "ejabberdctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")


def converge(book: Ledger) -> None:
    """Every present member publishes one item per category, and each then holds exactly what it must."""
    names = "".join(sorted(book.present))
    for name in names:
        book.publish(name)
    eventually(lambda: book.holds(names), timeout=90, interval=0.5, what=f"{', '.join(names)} to converge")
    book.check_exact(names)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """a, b and c running, each having published one item per category; d's server up, d known to
    nobody yet (its own config already names everyone: that is what it gets when it is admitted)."""
    require_servers()
    workdir = tmp_path_factory.mktemp("churn")
    consortium = loopback_consortium(workdir, HOSTS, feed_port_base=21000, discovery_interval=1.0,
                                     servers=SERVERS)
    consortium.write_files(audiences={"a": A_AUDIENCES})
    try:
        full = yaml.safe_load(consortium["a"].config_path.read_text())["members"]
        d_entry = next(m for m in full if m["name"] == "d")
        for name in "abc":
            edit_config(consortium, name, without("d"))
        consortium.start_servers()
        consortium.start_bridges("abc", timeout=120)
        book = Ledger(consortium, workdir, {"a", "b", "c"}, d_entry)
        converge(book)
        yield book
    finally:
        consortium.stop()


def test_a_member_joins_and_catches_up_with_the_history_its_audience_may_read(ledger: Ledger) -> None:
    ledger.step("join", after=None)
    consortium = ledger.consortium
    logs = reload(consortium, "abc", lambda config: config["members"].append(ledger.newcomer))
    for name, log in logs.items():
        assert "audit: member d joined (reload)" in log and "audit: following pubsub.d.test (reload)" in log
        assert "audit: added bridge.d.test (member d) to iodef/partner/mitigation" in log, name
    assert "audit: added bridge.d.test (member d) to iodef/need-to-know/mitigation" not in logs["a"]
    ledger.present.add("d")
    for publisher in "abc":  # what their nodes hold: d's share of it
        service = consortium[publisher].pubsub_jid
        with closing(sqlite3.connect(consortium[publisher].store_path, timeout=30)) as conn:
            for node, item_id in conn.execute("SELECT node, item_id FROM entries WHERE origin = 'local'"):
                ledger.expect(publisher, service, node, item_id)
    # The history in the peers' windows that d may read: everything but a's need-to-know item.
    assert len(ledger.expected["d"]) == 3 * len(CATEGORIES) - 1
    consortium.start_bridge("d", timeout=120)  # ready once caught up with every node it may read
    eventually(lambda: ledger.holds("d"), timeout=60, interval=0.5, what="d to catch up")
    # The others follow d without a restart: what it publishes reaches them.
    ledger.publish("d")
    eventually(lambda: ledger.holds("abcd"), timeout=60, interval=0.5, what="a, b and c to mirror d's items")
    time.sleep(3)  # a few check rounds (1 s): a late duplicate or a stray item would land now
    ledger.check_exact("abcd")
    ledger.steps.append("join")


def post(member: Member, tag: str) -> int:
    """An AtomPub POST of one partner document to ``member``'s feed: signed by its running bridge, with
    the key it signs with at that moment; the status (201 once published, 202 once queued)."""
    request = urllib.request.Request(
        member.feed_url + "feeds/partner", data=document(member.name, tag, "partner", "mitigation"),
        method="POST", headers={**member.basic_auth(), "Content-Type": "application/xml"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status


def queued(consortium: Consortium, name: str, tag: str) -> dict[Item, bytes]:
    """What ``name``'s outbox holds of documents tagged ``tag``: the bytes signed at submission."""
    member = consortium[name]
    with closing(sqlite3.connect(member.store_path, timeout=30)) as conn:
        rows = conn.execute("SELECT item_id, payload FROM outbox WHERE incident LIKE ?",
                            (f"%CHURN-{name.upper()}-{tag}-%",))
        return {(member.pubsub_jid, item_id): bytes(payload) for item_id, payload in rows}


def mirrored_bytes(consortium: Consortium, receiver: str, items: Iterable[Item]) -> dict[Item, bytes]:
    """The bytes ``receiver`` mirrored of ``items``."""
    wanted = set(items)
    with closing(Store(consortium[receiver].store_path)) as store:
        return {(e.service, e.item_id): e.xml for e in store.entries(limit=1_000_000)
                if e.origin == "remote" and (e.service, e.item_id) in wanted}


def rotate_in_a_burst(ledger: Ledger, name: str, *, alongside: str) -> None:
    """Member ``name`` rotates its key (``xmppbridge keygen``) in the middle of an AtomPub burst that its
    bridge signs, while ``alongside`` publishes to everyone: an unpinned key refused first, then every
    present member pins the new certificate beside the old one, ``name`` switches by a reload and never
    restarts, the others hold every item once with the bytes it was signed with, nothing quarantined;
    then the old certificate is retired and nothing changes."""
    consortium = ledger.consortium
    member = consortium[name]
    everyone = "".join(sorted(ledger.present))
    keys = consortium.workdir / "keys"
    made = subprocess.run([sys.executable, "-m", "xmppbridge.cli", "keygen", "--key",
                           str(keys / f"{name}2.key"), "--cert", str(keys / f"{name}2.crt"),
                           "--domain", member.domain],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    old, new = (fingerprint(x509.load_pem_x509_certificate((keys / f"{n}.crt").read_bytes()))
                for n in (name, f"{name}2"))

    def pin_both(config: dict[str, Any]) -> None:
        entry = next(m for m in config["members"] if m["name"] == name)
        entry["certificate"] = [f"keys/{name}.crt", f"keys/{name}2.crt"]

    def new_key(config: dict[str, Any]) -> None:
        config["signing"].update(key=f"keys/{name}2.key", cert=f"keys/{name}2.crt")

    # 0. Switching before the new certificate is pinned in its own entry is refused: it keeps its key.
    assert member.bridge is not None
    pid = member.bridge.pid
    edit_config(consortium, name, new_key)
    start = consortium.log_path(name).stat().st_size
    member.bridge.send_signal(signal.SIGHUP)
    eventually(lambda: "keeping the running config" in log_since(consortium, name, start), timeout=30,
               what=f"{name} to refuse the unpinned key")
    assert "does not hold our signing.cert" in log_since(consortium, name, start)
    edit_config(consortium, name, lambda config: config["signing"].update(key=f"keys/{name}.key",
                                                                         cert=f"keys/{name}.crt"))
    # 1. Every member pins the new certificate beside the old one (``name`` too: its own entry names both).
    logs = reload(consortium, everyone, pin_both)
    assert all(f"audit: member {name}'s signing certificates changed (reload)" in log
               for log in logs.values())
    # 2. A burst at its AtomPub, which its bridge signs itself, and in its middle the switch to the new key
    # by a reload of ``name`` alone, while ``alongside`` goes on publishing to everyone. No restart.
    others = threading.Thread(target=ledger.publish, args=(alongside, [("partner", "mitigation")] * 3))
    others.start()
    with ThreadPoolExecutor(4) as pool:
        first = [pool.submit(post, member, f"OLD-{i}") for i in range(20)]
        eventually(lambda: len(queued(consortium, name, "OLD")) == 20, timeout=90, interval=0.2,
                   what=f"{name} to sign the first half of the burst")  # signed; published or still queued
        logs = reload(consortium, name, new_key)
        second = [pool.submit(post, member, f"NEW-{i}") for i in range(20)]
        assert {f.result() for f in first + second} <= {201, 202}
    others.join()
    assert f"(certificate {new}) instead of " in logs[name] and f"(certificate {old}) (reload)" in logs[name]
    assert member.bridge.pid == pid and member.bridge.poll() is None  # the same process all along
    before, after = queued(consortium, name, "OLD"), queued(consortium, name, "NEW")
    assert len(before) == len(after) == 20
    for item_id in {i for _, i in before} | {i for _, i in after}:
        ledger.expect(name, member.pubsub_jid, "iodef/partner/mitigation", item_id)
    eventually(lambda: ledger.holds(everyone), timeout=90, interval=0.5, what="the burst across the rotation")
    ledger.check_exact(everyone)  # nothing quarantined by anyone, nothing twice
    receivers = everyone.replace(name, "")
    for receiver in receivers:
        assert signers(consortium, receiver, before) == {old: 20}, receiver
        assert signers(consortium, receiver, after) == {new: 20}, receiver
        # What was queued before the switch went out with the bytes it was signed with.
        assert mirrored_bytes(consortium, receiver, before) == before, receiver
    # 3. The old key retired: what it signed stays mirrored, and ``name`` goes on with the new one.
    reload(consortium, everyone, lambda config: next(
        m for m in config["members"] if m["name"] == name).update(certificate=f"keys/{name}2.crt"))
    assert post(member, "RETIRED-0") in (201, 202)
    retired = queued(consortium, name, "RETIRED")
    ledger.expect(name, member.pubsub_jid, "iodef/partner/mitigation", next(iter(retired))[1])
    eventually(lambda: ledger.holds(everyone), timeout=60, interval=0.5,
               what=f"{name}'s items after the retirement")
    ledger.check_exact(everyone)
    assert all(signers(consortium, receiver, retired) == {new: 1} for receiver in receivers)
    assert member.bridge.pid == pid


def test_a_member_rotates_its_key_in_the_middle_of_a_burst_without_restarting_and_nothing_is_lost(
        ledger: Ledger) -> None:
    ledger.step("rotate", after="join")
    rotate_in_a_burst(ledger, "b", alongside="a")
    ledger.steps.append("rotate")


def test_a_member_whose_server_is_down_catches_up_and_the_others_go_on_meanwhile(ledger: Ledger) -> None:
    ledger.step("server down", after="rotate")
    consortium = ledger.consortium
    b = consortium["b"]
    b.prosody.stop()
    eventually(lambda: consortium.health("b").get("connected") is False, timeout=30,
               what="b's bridge to see its server gone")
    queued = ledger.enqueue("b", 5, "DOWN")  # b's own items wait in its outbox
    # While b is away: each publish returns only once that member's outbox published everything.
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(ledger.publish, "acd"))
    eventually(lambda: ledger.holds("acd", but=queued), timeout=60, interval=0.5,
               what="a, c and d to mirror each other's items while b is down")
    for name in "acd":
        assert consortium.health(name).get("outbox") == 0, name
    assert consortium.health("b").get("connected") is False  # all of that while b was still away
    assert consortium.health("b").get("outbox") == len(queued)
    b.prosody.start()
    eventually(lambda: ledger.holds("abcd"), timeout=90, interval=0.5,
               what="b to catch up, and the others to get what b queued")
    time.sleep(3)
    ledger.check_exact("abcd")
    ledger.steps.append("server down")


async def source_view(consortium: Consortium, name: str,
                      services: Iterable[str]) -> dict[tuple[str, str], tuple[bool, str]]:
    """Member ``name``'s standing at each service's non-public nodes, as the service itself answers a
    component connected as ``name``'s bridge: (subscribed, what an items request gets)."""
    member = consortium[name]
    xmpp = ComponentXMPP(member.bridge_jid, consortium.secret, member.ip, member.prosody.component_port,
                         fix_error_ns=True)
    for plugin in ("xep_0030", "xep_0060"):
        xmpp.register_plugin(plugin)
    started = asyncio.Event()
    xmpp.add_event_handler("session_start", lambda _: started.set())
    xmpp.connect()
    pubsub = xmpp.plugin["xep_0060"]
    found = {}
    try:
        await asyncio.wait_for(started.wait(), 30)
        for service in services:
            for node in NON_PUBLIC_NODES:
                try:
                    reply = await pubsub.get_subscriptions(service, node, ifrom=member.bridge_jid, timeout=20)
                    subscribed = any(s["subscription"] == "subscribed"
                                     for s in reply["pubsub"]["subscriptions"])
                except IqError:
                    subscribed = False
                try:
                    await pubsub.get_items(service, node, ifrom=member.bridge_jid, timeout=20)
                    items = "ok"
                except IqError as exc:
                    items = exc.condition
                except IqTimeout:
                    items = "timeout"
                found[service, node] = (subscribed, items)
    finally:
        xmpp.disconnect()
    return found


def leave(ledger: Ledger, name: str) -> dict[str, str]:
    """Member ``name`` leaves: the others drop it from their registries (reload), which revokes it at each
    of their non-public nodes whose audience named it (its subscription cancelled, its affiliation
    removed) and unsubscribes them from its nodes. Each one's log lines of the reload, by member."""
    consortium = ledger.consortium
    stayers = "".join(sorted(ledger.present - {name}))
    bridge, service = consortium[name].bridge_jid, consortium[name].pubsub_jid
    logs = reload(consortium, stayers, without(name))
    for stayer, log in logs.items():
        assert f"audit: member {name} left (reload)" in log and f"audit: no longer following {service}" in log
        audiences = consortium.audiences(stayer)
        for node in NON_PUBLIC_NODES:
            category = parse_node_name("iodef", node)
            assert category is not None
            if name in audiences.of(*category).members:
                assert f"audit: cancelled the subscription of {bridge} to {node}" in log, (stayer, node)
                assert f"audit: removed {bridge} from {node}" in log, (stayer, node)
    eventually(lambda: all(f"unsubscribed from iodef/partner/mitigation on {service}" in
                           log_since(consortium, n, 0) for n in stayers), timeout=30,
               what=f"{', '.join(stayers)} to unsubscribe from {name}'s nodes")
    ledger.present.discard(name)
    return logs


def go_on_without(ledger: Ledger, name: str) -> None:
    """The others go on among themselves (not in public: that is open to anyone, ``name`` as well);
    ``name``, unaware, publishes too, and none of it reaches them (nor their quarantines: they left its
    nodes); ``name`` gets nothing new. Each holds exactly what it must."""
    stayers = "".join(sorted(ledger.present))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: ledger.publish(n, CATEGORIES[1:] if n != name else CATEGORIES),
                      stayers + name))
    eventually(lambda: ledger.holds(stayers), timeout=60, interval=0.5,
               what=f"{', '.join(stayers)} to go on")
    time.sleep(5)  # the leaver's check rounds (1 s) ask the others' nodes again: they must get nothing
    ledger.check_exact(stayers + name)


def revoked_at_the_sources(ledger: Ledger, name: str) -> dict[tuple[str, str], tuple[bool, str]]:
    """With ``name``'s bridge stopped, a component as ``name`` asks each other service what it may do
    at their non-public nodes (``source_view``); then its bridge starts again, and catches up with every
    node it follows anew: what it mirrored before it left stays, nothing more comes."""
    consortium = ledger.consortium
    consortium.stop_bridge(name)
    services = [consortium[n].pubsub_jid for n in sorted(ledger.present)]
    view = asyncio.run(source_view(consortium, name, services))
    consortium.start_bridge(name, timeout=120)
    ledger.check_exact("".join(sorted(ledger.present | {name})))
    return view


def test_a_member_leaves_is_revoked_at_the_source_and_gets_nothing_new(ledger: Ledger) -> None:
    ledger.step("leave", after="server down")
    consortium = ledger.consortium
    leave(ledger, "c")
    go_on_without(ledger, "c")
    # At the source, each service refuses c. Restarted, c lists every node it follows anew: d's ejabberd
    # lists its nodes to c as empty rather than refusing (INTEROP.md); what c mirrored from d before it
    # left stays, not retracted.
    services = [consortium[n].pubsub_jid for n in "abd"]
    assert revoked_at_the_sources(ledger, "c") == {(service, node): (False, "forbidden")
                                                   for service in services for node in NON_PUBLIC_NODES}
