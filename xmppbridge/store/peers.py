"""One row per peer service: its health as the running bridge last saw it (``peers``)."""

from __future__ import annotations

from datetime import datetime

from xmppbridge.peers import Outcome, PeerHealth
from xmppbridge.store.db import format_time, from_text, parse_time
from xmppbridge.store.sql import Connection

# Schema version 6 (store.migrations).
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS peers (
        service TEXT PRIMARY KEY,  -- jids.service_key form, as subscriptions are keyed
        reachable INTEGER NOT NULL,
        since TEXT NOT NULL,  -- when reachable last changed
        checked_at TEXT NOT NULL,  -- the last outcome recorded (at most PEER_NOTE_INTERVAL old while busy)
        condition TEXT,  -- last error condition (RFC 6120 §8.3.3, or "timeout"); kept after recovery
        text TEXT,  -- its <text/>
        error_at TEXT
    ) WITHOUT ROWID
    """,
)


def record(conn: Connection, service: str, outcome: Outcome, at: datetime) -> None:
    # SET expressions read the row as it was (SQLite's UPDATE), so ``peers.reachable`` is the old value.
    stamp = format_time(at)
    failed = outcome.condition is not None
    conn.execute(
        "INSERT INTO peers (service, reachable, since, checked_at, condition, text, error_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (service) DO UPDATE SET"
        " since = CASE WHEN peers.reachable = excluded.reachable THEN peers.since ELSE excluded.since END,"
        " reachable = excluded.reachable, checked_at = excluded.checked_at,"
        " condition = CASE WHEN ? THEN excluded.condition ELSE peers.condition END,"
        " text = CASE WHEN ? THEN excluded.text ELSE peers.text END,"
        " error_at = CASE WHEN ? THEN excluded.error_at ELSE peers.error_at END",
        (service, int(outcome.reachable), stamp, stamp, outcome.condition, outcome.text if failed else None,
         stamp if failed else None, failed, failed, failed),
    )


def forget_others(conn: Connection, services: list[str]) -> None:
    """Drop the rows of services no longer subscribed to, so that /metrics stops reporting them."""
    others, values = conn.dialect.one_of("service", services, negate=True)
    conn.execute(f"DELETE FROM peers WHERE {others}", (values,))


def peers(conn: Connection) -> list[PeerHealth]:
    rows = conn.execute("SELECT * FROM peers ORDER BY service").fetchall()
    return [PeerHealth(row["service"], bool(row["reachable"]), parse_time(row["since"]),
                       parse_time(row["checked_at"]), row["condition"], row["text"] or "",
                       from_text(row["error_at"])) for row in rows]
