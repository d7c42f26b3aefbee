"""Per-peer health: classification, when to write, the store's row, and what the mirror records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from slixmpp import Iq
from slixmpp.exceptions import IqError, IqTimeout

from tests.test_mirror import NODE, ScriptedNode
from tests.test_store_feed import old_store
from xmppbridge.errors import PublishFailed
from xmppbridge.ops.status import format_status, peer_report
from xmppbridge.peers import OK, TIMEOUT, classify, degraded, must_write
from xmppbridge.store import Store
from xmppbridge.store import peers as peer_rows
from xmppbridge.store.db import SCHEMA_VERSION
from xmppbridge.store.items import ItemRef, Refused
from xmppbridge.xmpp import peers as peer_notes
from xmppbridge.xmpp.component import explain, peer_failure
from xmppbridge.xmpp.mirror import Mirror
from xmppbridge.xmpp.peers import PeerNotes
from xmppbridge.xmpp.stanzas import StanzaError

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PEER = "pubsub.b.test"


@pytest.mark.parametrize(("condition", "reachable"), [
    (None, True),
    ("remote-server-not-found", False),
    ("remote-server-timeout", False),
    ("service-unavailable", False),
    (TIMEOUT, False),
    # The peer's service answered: reachable, and refusing.
    ("forbidden", True),
    ("item-not-found", True),
    ("not-authorized", True),
])
def test_classify(condition: str | None, reachable: bool) -> None:
    outcome = classify(condition, "why")
    assert outcome.reachable is reachable
    assert outcome.condition == condition
    assert outcome == OK if condition is None else outcome.text == "why"


def test_must_write_on_a_change_and_otherwise_at_most_every_interval() -> None:
    lost = classify("remote-server-not-found", "unable to resolve service")
    assert must_write(None, OK, 0.0, 30.0)  # the first outcome of this process
    assert not must_write(OK, OK, 29.0, 30.0)  # a busy stream: one write per interval
    assert must_write(OK, OK, 30.0, 30.0)
    assert must_write(OK, lost, 0.0, 30.0)  # became unreachable
    assert must_write(lost, OK, 0.0, 30.0)  # back
    assert not must_write(lost, lost, 1.0, 30.0)  # the same failure again
    assert must_write(lost, classify("remote-server-timeout"), 1.0, 30.0)  # a different one
    assert must_write(OK, classify("forbidden"), 1.0, 30.0)  # reachable, but a new refusal


def test_degraded_when_any_peer_is_unreachable(store_target: str) -> None:
    with Store(store_target) as store:
        store.record_peer("pubsub.a.test", OK)
        assert not degraded(store.peers())
        store.record_peer(PEER, classify("remote-server-timeout"))
        assert degraded(store.peers())


def test_the_row_keeps_since_across_the_same_state_and_the_last_error_after_recovery(
        store_target: str) -> None:
    with Store(store_target) as store, store.transaction() as conn:
        peer_rows.record(conn, PEER, OK, T0)
        peer_rows.record(conn, PEER, OK, T0 + timedelta(seconds=30))
        [row] = peer_rows.peers(conn)
        assert (row.reachable, row.since, row.checked_at, row.condition) == (
            True, T0, T0 + timedelta(seconds=30), None)

        failed_at = T0 + timedelta(minutes=1)
        peer_rows.record(conn, PEER, classify("remote-server-not-found", "unable to resolve service"),
                         failed_at)
        peer_rows.record(conn, PEER, classify("remote-server-timeout"), failed_at + timedelta(seconds=5))
        [row] = peer_rows.peers(conn)
        assert (row.reachable, row.since) == (False, failed_at)
        assert (row.condition, row.text, row.error_at) == ("remote-server-timeout", "",
                                                           failed_at + timedelta(seconds=5))

        back = T0 + timedelta(minutes=2)
        peer_rows.record(conn, PEER, OK, back)
        [row] = peer_rows.peers(conn)
        assert (row.reachable, row.since, row.checked_at) == (True, back, back)
        assert (row.condition, row.error_at) == ("remote-server-timeout", failed_at + timedelta(seconds=5))


def test_status_lists_every_subscribed_service_with_its_health(store_target: str) -> None:
    config = SimpleNamespace(subscriptions=[SimpleNamespace(service="pubsub.a.test"),
                                            SimpleNamespace(service=PEER)])
    with Store(store_target) as store:
        store.record_peer(PEER, classify("remote-server-not-found", "unable to resolve service"))
        report = peer_report(config, store)  # type: ignore[arg-type]
        text = format_status({"jid": "bridge.a.test", "connection": "online", "connection_since": None,
                              "outbox_depth": 0, "quarantine": 0, "entries": 0, "subscriptions": [],
                              "seconds_since_contact": {}, **report})
    assert report["peers_degraded"] is True
    never, lost = report["peers"]  # type: ignore[misc]
    assert never == {"service": "pubsub.a.test", "reachable": None, "since": None, "checked_at": None,
                     "condition": None, "text": None, "error_at": None}
    assert lost["reachable"] is False and lost["condition"] == "remote-server-not-found"
    assert lost["text"] == "unable to resolve service" and lost["since"] == lost["error_at"]
    assert "peer pubsub.a.test: never heard from, not checked yet" in text
    assert f"peer {PEER}: never heard from, UNREACHABLE since {lost['since']}" in text
    assert f"last error remote-server-not-found (unable to resolve service) at {lost['error_at']}" in text


def test_peer_notes_write_changes_at_once_and_the_rest_rate_limited(
        store_target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(peer_notes.time, "monotonic", lambda: clock[0])
    with Store(store_target) as store:
        notes = PeerNotes(store)
        notes.answered(PEER)
        first = store.peers()[0].checked_at
        clock[0] += 1
        notes.answered(PEER)  # within the interval: not written
        assert store.peers()[0].checked_at == first
        notes.failed(PEER, RuntimeError("the store is locked"))  # says nothing about the peer
        assert store.peers()[0].reachable
        notes.failed(PEER, PublishFailed("no answer", transient=True, condition=TIMEOUT))
        [row] = store.peers()
        assert (row.reachable, row.condition) == (False, TIMEOUT)
        clock[0] += peer_notes.PEER_NOTE_INTERVAL
        notes.failed(PEER, PublishFailed("no answer", transient=True, condition=TIMEOUT))
        assert store.peers()[0].checked_at > row.checked_at  # the same failure, after the interval


async def test_the_periodic_check_skips_quarantined_items_and_counts_them_seen(store_target: str) -> None:
    with Store(store_target) as store:
        mirror = Mirror(SimpleNamespace(), store, None)  # type: ignore[arg-type]
        store.add_reject(Refused("xmpp", "unknown-signer", "m", b"<x/>", ItemRef(PEER, NODE, "refused")))
        remote = ScriptedNode(mirror, ["refused", "lost"])
        for _ in range(3):
            await mirror.catch_up(remote, PEER, NODE, remote_capacity=100,  # type: ignore[arg-type]
                                  kind="check")
        assert remote.fetched == ["lost"]  # missing twice in a row; "refused" never
        [record] = store.rejects()
        assert record.seen_count == 4 and store.count_rejects() == 1
        # The catch-up after a reconnection still fetches everything, quarantined items too.
        remote.fetched = []
        await mirror.catch_up(remote, PEER, NODE, remote_capacity=100)  # type: ignore[arg-type]
        assert sorted(remote.fetched) == ["lost", "refused"]


def test_a_version_5_store_gets_the_peers_table(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite"
    conn = old_store(path, 5)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'peers'").fetchone()[0] == 0
    conn.close()
    with Store(path) as store:
        assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert store.peers() == []
        store.record_peer(PEER, OK)
        assert [p.service for p in store.peers()] == [PEER]


def test_peers_no_longer_subscribed_to_are_forgotten(store_target: str) -> None:
    with Store(store_target) as store:
        store.record_peer("pubsub.a.test", OK)
        store.record_peer(PEER, OK)
        store.forget_peers_except([PEER])
        assert [p.service for p in store.peers()] == [PEER]


def iq_error(condition: str, text: str) -> IqError:
    iq = Iq(stype="error")
    iq["error"]["condition"] = condition
    iq["error"]["text"] = text
    return IqError(iq)


def test_the_condition_and_text_of_a_failed_request() -> None:
    lost = iq_error("remote-server-not-found", "Server-to-server connection failed: NXDomain")
    assert peer_failure(lost) == StanzaError("remote-server-not-found",
                                             "Server-to-server connection failed: NXDomain")
    assert explain(lost) == "remote-server-not-found (Server-to-server connection failed: NXDomain)"
    assert peer_failure(IqTimeout(Iq())).condition == TIMEOUT  # type: ignore[union-attr]
    refused = PublishFailed("refused", condition="forbidden", text="not on the whitelist")
    assert peer_failure(refused) == StanzaError("forbidden", "not on the whitelist")
    assert explain(refused) == "refused"  # our own message already names the item and the condition
    assert peer_failure(PublishFailed("outbox item unknown")) is None
    assert peer_failure(RuntimeError("database is locked")) is None
