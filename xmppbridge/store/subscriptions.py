"""Remote nodes the bridge mirrors, and what the running bridge reports about itself.

Both feed `xmppbridge status`, which runs in another process than the bridge and reads them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from xmppbridge.store.db import format_time, from_text, now, parse_time
from xmppbridge.store.sql import Connection


@dataclass(frozen=True)
class SubscriptionState:
    service: str
    node: str
    subscribed_at: datetime
    last_item_at: datetime | None
    last_sync_at: datetime | None


@dataclass(frozen=True)
class ItemState:
    """What the mirror holds for one remote item: enough to reconcile against the node's item list."""

    item_id: str
    updated_at: datetime
    deleted: bool


def record_subscribed(conn: Connection, service: str, node: str) -> None:
    conn.execute(
        "INSERT INTO subscriptions (service, node, subscribed_at) VALUES (?, ?, ?)"
        " ON CONFLICT (service, node) DO NOTHING",
        (service, node, format_time(now())),
    )


def record_item(conn: Connection, service: str, node: str) -> None:
    conn.execute("UPDATE subscriptions SET last_item_at = ? WHERE service = ? AND node = ?",
                 (format_time(now()), service, node))


def record_sync(conn: Connection, service: str, node: str) -> None:
    conn.execute("UPDATE subscriptions SET last_sync_at = ? WHERE service = ? AND node = ?",
                 (format_time(now()), service, node))


def subscriptions(conn: Connection) -> list[SubscriptionState]:
    rows = conn.execute("SELECT * FROM subscriptions ORDER BY service, node").fetchall()
    return [SubscriptionState(row["service"], row["node"], parse_time(row["subscribed_at"]),
                              from_text(row["last_item_at"]), from_text(row["last_sync_at"])) for row in rows]


def item_states(conn: Connection, service: str, node: str) -> list[ItemState]:
    rows = conn.execute(
        "SELECT item_id, updated_at, deleted_at FROM entries"
        " WHERE service = ? AND node = ? AND origin = 'remote'",
        (service, node),
    ).fetchall()
    return [ItemState(row["item_id"], parse_time(row["updated_at"]), row["deleted_at"] is not None)
            for row in rows]


def set_state(conn: Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO bridge_state (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, value, format_time(now())),
    )


def get_state(conn: Connection) -> dict[str, tuple[str, datetime]]:
    rows = conn.execute("SELECT key, value, updated_at FROM bridge_state").fetchall()
    return {row["key"]: (row["value"], parse_time(row["updated_at"])) for row in rows}
