"""`xmppbridge status`: what an operator needs at 3 a.m., read from the bridge's store.

The running bridge records its connection state and per-node contact times in the store, so this works
from another process and even while the bridge is down (it then says so).
"""

from __future__ import annotations

from datetime import UTC, datetime

from xmppbridge.config import Config
from xmppbridge.store import Store


def status_report(config: Config, store: Store, *, now: datetime | None = None) -> dict[str, object]:
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
        "outbox_depth": store.outbox_depth(),
        "quarantine": store.count_rejects(),
        "entries": store.count_entries(),
        "subscriptions": subscriptions,
        "seconds_since_contact": {service: _age(now, t) for service, t in contact.items()},
    }


def format_status(report: dict[str, object]) -> str:
    lines = [
        f"bridge {report['jid']}: {report['connection']} (since {report['connection_since'] or '-'})",
        f"outbox: {report['outbox_depth']} waiting   quarantine: {report['quarantine']}   "
        f"mirrored entries: {report['entries']}",
    ]
    contact = report["seconds_since_contact"]
    assert isinstance(contact, dict)
    for service, age in sorted(contact.items()):
        heard = "never heard from" if age is None else f"last contact {age:.0f} s ago"
        lines.append(f"peer {service}: {heard}")
    subscriptions = report["subscriptions"]
    assert isinstance(subscriptions, list)
    for sub in subscriptions:
        lines.append(f"  {sub['service']} {sub['node']}: last item {sub['last_item'] or '-'}, "
                     f"last catch-up {sub['last_sync'] or '-'}")
    return "\n".join(lines)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(now: datetime, value: datetime | None) -> float | None:
    return None if value is None else max(0.0, (now - value).total_seconds())
