"""`xmppbridge status`: what an operator needs at 3 a.m., read from the bridge's store.

The running bridge records its connection state and per-node contact times in the store, so this works
from another process and even while the bridge is down (it then says so).
"""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from typing import Protocol

from xmppbridge.config.settings import Config
from xmppbridge.lease import lease_key, lease_path, lock_halves, recorded_active
from xmppbridge.peers import PeerHealth, degraded
from xmppbridge.store.contracts import EntryReads, Outbox, PeerHealthReads, QuarantineReads, Subscriptions


class Reported(EntryReads, QuarantineReads, Outbox, PeerHealthReads, Subscriptions, Protocol):
    """What status counts and reads: a little of every concern."""


def status_report(config: Config, store: Reported, *, now: datetime | None = None) -> dict[str, object]:
    now = now or datetime.now(UTC)
    state = store.state()
    connection, since = state.get("connection", ("never started", None))
    subscriptions: list[dict[str, str | None]] = []
    contact: dict[str, datetime | None] = {}
    for sub in store.subscriptions():
        subscriptions.append({"service": sub.service, "node": sub.node, "last_item": _iso(sub.last_item_at),
                              "last_sync": _iso(sub.last_sync_at)})
        # Contact = anything heard from the peer: an item, or a completed catch-up round trip.
        heard = [t for t in (sub.last_item_at, sub.last_sync_at, contact.get(sub.service)) if t is not None]
        contact[sub.service] = max(heard) if heard else None
    return {
        "jid": config.jid,
        "connection": connection,
        "connection_since": _iso(since),
        # The server address (of a cluster: the node) the bridge connected to last (component.servers).
        "server": state.get("server", (None, None))[0],
        # Several `run`s may share the store (xmppbridge.process.leadership): the last to take the lease, and
        # whether anyone holds it now (None: could not be told, e.g. the database is unreachable).
        **recorded_active(state),
        "lease_held": lease_held(config),
        "outbox_depth": store.outbox_depth(),
        "quarantine": store.count_rejects(),
        "entries": store.count_entries(),
        "subscriptions": subscriptions,
        "seconds_since_contact": {service: _age(now, t) for service, t in contact.items()},
        **peer_report(config, store),
    }


def peer_report(config: Config, store: PeerHealthReads) -> dict[str, object]:
    """Health of each subscribed service (``xmppbridge.peers``), for `status` and ``/healthz``:
    ``peers_degraded`` when one cannot be reached. A service not yet talked to has ``reachable`` None."""
    known = {peer.service: peer for peer in store.peers()}
    followed = sorted({sub.service for sub in config.subscriptions})
    return {"peers_degraded": degraded(known[service] for service in followed if service in known),
            "peers": [_peer(service, known.get(service)) for service in followed]}


def _peer(service: str, peer: PeerHealth | None) -> dict[str, object]:
    if peer is None:
        return {"service": service, "reachable": None, "since": None, "checked_at": None, "condition": None,
                "text": None, "error_at": None}
    return {"service": service, "reachable": peer.reachable, "since": _iso(peer.since),
            "checked_at": _iso(peer.checked_at), "condition": peer.condition, "text": peer.text or None,
            "error_at": _iso(peer.error_at)}


def _via(report: dict[str, object]) -> str:
    """Which server: the one connected to, or the last one (while offline)."""
    server = report.get("server")
    if not server:
        return ""
    return f" via {server}" if report["connection"] == "online" else f", last via {server}"


def format_status(report: dict[str, object]) -> str:
    lines = [
        f"bridge {report['jid']}: {report['connection']}{_via(report)} "
        f"(since {report['connection_since'] or '-'})",
        *_leadership(report),
        f"outbox: {report['outbox_depth']} waiting   quarantine: {report['quarantine']}   "
        f"mirrored entries: {report['entries']}",
    ]
    contact = report["seconds_since_contact"]
    assert isinstance(contact, dict)
    peers = report["peers"]
    assert isinstance(peers, list)
    health = {peer["service"]: peer for peer in peers}
    for service in sorted(set(contact) | set(health)):
        age = contact.get(service)
        heard = "never heard from" if age is None else f"last contact {age:.0f} s ago"
        lines.append(f"peer {service}: {heard}, {_reachability(health.get(service))}")
        error = health.get(service)
        if error is not None and error["condition"] is not None:
            text = f" ({error['text']})" if error["text"] else ""
            lines.append(f"  last error {error['condition']}{text} at {error['error_at']}")
    subscriptions = report["subscriptions"]
    assert isinstance(subscriptions, list)
    for sub in subscriptions:
        lines.append(f"  {sub['service']} {sub['node']}: last item {sub['last_item'] or '-'}, "
                     f"last catch-up {sub['last_sync'] or '-'}")
    return "\n".join(lines)


def _leadership(report: dict[str, object]) -> list[str]:
    if "lease_held" not in report:
        return []
    active, since, held = report["active_instance"], report["active_since"], report["lease_held"]
    if held is None:
        return [f"active instance: cannot tell whether anyone holds the lease (last active {active or '-'})"]
    if not held:
        return [f"active instance: none holds the lease (last active {active or '-'}, since {since or '-'})"]
    return [f"active instance: {active} (since {since})"]


def _reachability(peer: dict[str, object] | None) -> str:
    if peer is None or peer["reachable"] is None:
        return "not checked yet"
    return f"{'reachable' if peer['reachable'] else 'UNREACHABLE'} since {peer['since']}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(now: datetime, value: datetime | None) -> float | None:
    return None if value is None else max(0.0, (now - value).total_seconds())


def lease_held(config: Config) -> bool | None:
    """Whether any instance holds this bridge's lease now (for ``status``); None if it cannot be told."""
    if config.store_url is None:
        path = lease_path(config.store_path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: costs a standby nothing
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
    import psycopg

    high, low = lock_halves(lease_key(config.jid))
    try:
        with psycopg.connect(config.store_url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
                               " AND objid = %s AND objsubid = 1 AND granted", (high, low)).fetchone()
    except psycopg.Error:
        return None
    return bool(row and row[0])
