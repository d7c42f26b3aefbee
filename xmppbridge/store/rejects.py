"""Rejects: inputs we refused, kept byte for byte with the reason, for the operator to inspect."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from xmppbridge.store.db import inserted_id, later_than, parse_time


@dataclass(frozen=True)
class Reject:
    id: int
    source: str  # e.g. "xmpp", "cli:<file>", "http"
    service: str | None
    node: str | None
    item_id: str | None
    reason: str  # short stable code (InputRejected.reason)
    message: str
    raw: bytes  # exactly as received
    received_at: datetime


def add(
    conn: sqlite3.Connection,
    *,
    source: str,
    service: str | None,
    node: str | None,
    item_id: str | None,
    reason: str,
    message: str,
    raw: bytes,
) -> int:
    cursor = conn.execute(
        "INSERT INTO rejects (source, service, node, item_id, reason, message, raw, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (source, service, node, item_id, reason, message, bytes(raw), later_than(None)),
    )
    return inserted_id(cursor)


def recent(conn: sqlite3.Connection, limit: int) -> list[Reject]:
    """Newest first."""
    rows = conn.execute("SELECT * FROM rejects ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [
        Reject(
            id=row["id"],
            source=row["source"],
            service=row["service"],
            node=row["node"],
            item_id=row["item_id"],
            reason=row["reason"],
            message=row["message"],
            raw=bytes(row["raw"]),
            received_at=parse_time(row["received_at"]),
        )
        for row in rows
    ]


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM rejects").fetchone()[0]
