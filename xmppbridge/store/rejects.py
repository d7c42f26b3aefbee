"""The quarantine: inputs we refused, kept byte for byte with source, time and reason.

Nothing a peer sends is silently dropped: each refused item is held here until an operator releases it
(it is verified again, e.g. after adding a trust anchor, and mirrored if it now passes) or purges it.
The SQL table keeps its first name, ``rejects``; schema version 3 added what the quarantine needs.

A peer re-sending the same refused bytes (reconnects, catch-up refetches) does not grow the table: the
held record is found by (service, node, item id, SHA-256 of the bytes) and only counted again. Raw bytes
are kept up to ``RAW_MAX`` (far above any stanza an XMPP server passes), so a hostile source cannot make
one record arbitrarily large.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from xmppbridge.store.db import format_time, from_text, inserted_id, later_than, parse_time
from xmppbridge.store.items import Refused
from xmppbridge.store.sql import Connection, Row

RAW_MAX = 1 << 20

# Schema version 3 (run by store.migrations). Existing rows keep everything; the digest of their bytes
# is filled in so that duplicates of them are recognised too.
MIGRATION_3 = (
    "ALTER TABLE rejects ADD COLUMN raw_sha256 TEXT",
    "ALTER TABLE rejects ADD COLUMN raw_size INTEGER",  # size as received; raw may be cut at RAW_MAX
    "ALTER TABLE rejects ADD COLUMN last_seen_at TEXT",
    "ALTER TABLE rejects ADD COLUMN seen_count INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE rejects ADD COLUMN released_at TEXT",  # NULL while held
    "ALTER TABLE rejects ADD COLUMN resolution TEXT",  # how a release ended, e.g. "mirrored: new"
    "CREATE INDEX IF NOT EXISTS rejects_item ON rejects (service, node, item_id, raw_sha256)",
)


@dataclass(frozen=True)
class Reject:
    id: int
    source: str  # e.g. "xmpp", "cli:<file>", "http"
    service: str | None
    node: str | None
    item_id: str | None
    reason: str  # short stable code (InputRejected.reason)
    message: str
    raw: bytes  # exactly as received (the first RAW_MAX bytes)
    received_at: datetime
    raw_size: int = 0
    last_seen_at: datetime | None = None
    seen_count: int = 1
    released_at: datetime | None = None
    resolution: str | None = None

    @property
    def held(self) -> bool:
        return self.released_at is None


def migrate_to_3(conn: Connection) -> None:
    for statement in MIGRATION_3:
        conn.execute(statement)
    for row in conn.execute("SELECT id, raw FROM rejects").fetchall():
        raw = bytes(row["raw"])
        conn.execute("UPDATE rejects SET raw_sha256 = ?, raw_size = ? WHERE id = ?",
                     (_digest(raw), len(raw), row["id"]))


def add(conn: Connection, refused: Refused) -> int:
    """Hold ``raw``; the id of the new record, or of the held one with the same item and bytes."""
    raw, item = refused.raw, refused.item
    service, node, item_id = (item.service, item.node, item.item_id) if item else (None, None, None)
    digest, stamp = _digest(raw), later_than(None)
    row = conn.execute(
        "SELECT id FROM rejects WHERE released_at IS NULL AND raw_sha256 = ?"
        " AND service IS NOT DISTINCT FROM ? AND node IS NOT DISTINCT FROM ?"
        " AND item_id IS NOT DISTINCT FROM ? ORDER BY id DESC LIMIT 1",
        (digest, service, node, item_id)).fetchone()
    if row is not None:
        conn.execute("UPDATE rejects SET seen_count = seen_count + 1, last_seen_at = ?, reason = ?,"
                     " message = ? WHERE id = ?", (stamp, refused.reason, refused.message, row["id"]))
        return int(row["id"])
    cursor = conn.execute(
        "INSERT INTO rejects (source, service, node, item_id, reason, message, raw, received_at, raw_sha256,"
        " raw_size, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (refused.source, service, node, item_id, refused.reason, refused.message, bytes(raw[:RAW_MAX]), stamp,
         digest, len(raw), stamp),
    )
    return inserted_id(cursor)


def recent(conn: Connection, limit: int, *, held_only: bool = False,
           reason: str | None = None) -> list[Reject]:
    """Newest first."""
    where, params = _filters(held_only=held_only, reason=reason)
    rows = conn.execute(f"SELECT * FROM rejects{where} ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [_from_row(row) for row in rows]


def get(conn: Connection, reject_id: int) -> Reject | None:
    row = conn.execute("SELECT * FROM rejects WHERE id = ?", (reject_id,)).fetchone()
    return None if row is None else _from_row(row)


def count(conn: Connection, *, held_only: bool = False) -> int:
    where, params = _filters(held_only=held_only)
    return conn.execute(f"SELECT count(*) FROM rejects{where}", params).fetchone()[0]


def held_item_ids(conn: Connection, service: str, node: str) -> set[str]:
    """Item ids of ``node`` with a record held in the quarantine."""
    rows = conn.execute("SELECT DISTINCT item_id FROM rejects WHERE service = ? AND node = ?"
                        " AND released_at IS NULL AND item_id IS NOT NULL", (service, node)).fetchall()
    return {row[0] for row in rows}


def seen_again(conn: Connection, service: str, node: str, item_ids: list[str]) -> None:
    """The node still offers these held items (a periodic check listed them and skipped the fetch):
    count each item's newest held record as seen once more."""
    listed, ids = conn.dialect.one_of("item_id", item_ids)
    conn.execute(
        "UPDATE rejects SET seen_count = seen_count + 1, last_seen_at = ? WHERE id IN (SELECT max(id)"
        f" FROM rejects WHERE service = ? AND node = ? AND released_at IS NULL AND {listed}"
        " GROUP BY item_id)",
        (later_than(None), service, node, ids))


def mark_released(conn: Connection, reject_id: int, resolution: str) -> None:
    conn.execute("UPDATE rejects SET released_at = ?, resolution = ? WHERE id = ?",
                 (later_than(None), resolution, reject_id))


def mark_refused_again(conn: Connection, reject_id: int, reason: str, message: str) -> None:
    """A release attempt failed: keep holding it, with today's reason."""
    conn.execute("UPDATE rejects SET reason = ?, message = ? WHERE id = ?", (reason, message, reject_id))


def purge(conn: Connection, *, ids: list[int] | None = None, before: datetime | None = None,
          released_only: bool = False) -> int:
    """Delete records by id and/or first received before ``before``; the number deleted."""
    conditions: list[str] = []
    params: list[object] = []
    if ids is not None:
        conditions.append(f"id IN ({', '.join('?' * len(ids))})")
        params.extend(ids)
    if before is not None:
        conditions.append("received_at < ?")
        params.append(format_time(before))
    if released_only:
        conditions.append("released_at IS NOT NULL")
    if not conditions:
        raise ValueError("purge needs ids, a time or released_only; refusing to empty the quarantine")
    return conn.execute(f"DELETE FROM rejects WHERE {' AND '.join(conditions)}", params).rowcount


def _filters(*, held_only: bool, reason: str | None = None) -> tuple[str, tuple[str, ...]]:
    conditions, params = [], []
    if held_only:
        conditions.append("released_at IS NULL")
    if reason is not None:
        conditions.append("reason = ?")
        params.append(reason)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), tuple(params)


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _from_row(row: Row) -> Reject:
    raw = bytes(row["raw"])
    return Reject(
        id=row["id"],
        source=row["source"],
        service=row["service"],
        node=row["node"],
        item_id=row["item_id"],
        reason=row["reason"],
        message=row["message"],
        raw=raw,
        received_at=parse_time(row["received_at"]),
        raw_size=row["raw_size"] if row["raw_size"] is not None else len(raw),
        last_seen_at=from_text(row["last_seen_at"]),
        seen_count=row["seen_count"],
        released_at=from_text(row["released_at"]),
        resolution=row["resolution"],
    )
