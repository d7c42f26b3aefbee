"""Outbox: signed items waiting to be published (or items to retract), written by the CLI and the
AtomPub handlers, drained by the XMPP shell.

Functions take an open connection and run plain SQL; the ``Store`` facade owns transactions.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from xmppbridge.iodef.model import Incident
from xmppbridge.store import custody, entries, incidents
from xmppbridge.store.db import from_text, later_than, parse_time
from xmppbridge.store.items import Custodian, SignedItem, Signer
from xmppbridge.store.sql import Connection, Cursor, Row

PENDING, PUBLISHED, FAILED = "pending", "published", "failed"
PUBLISH, RETRACT = "publish", "retract"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    node: str
    item_id: str
    payload: bytes
    status: str  # "pending" | "published" | "failed"
    reason: str | None  # why it failed
    created_at: datetime
    published_at: datetime | None
    source: str  # e.g. "cli:<file>"
    incident: Incident | None = None
    version: str = ""
    service: str | None = None  # where it was published
    action: str = PUBLISH  # "publish" | "retract" (payload empty: remove the item from its node)
    custody: tuple[Custodian, ...] = ()  # a relayed item's chain, copied into our entry once published


def _item(row: Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        node=row["node"],
        item_id=row["item_id"],
        payload=bytes(row["payload"]),
        status=row["status"],
        reason=row["reason"],
        created_at=parse_time(row["created_at"]),
        published_at=from_text(row["published_at"]),
        source=row["source"],
        incident=incidents.from_json(row["incident"]),
        version=row["version"],
        service=row["service"],
        action=row["action"],
        custody=custody.from_json(row["custody"]),
    )


def enqueue(conn: Connection, item: SignedItem, *, source: str, action: str = PUBLISH) -> Cursor:
    """The ``INSERT``'s cursor, whose one row is the new id (``db.inserted_id``), not read yet: on
    PostgreSQL the caller reads it once the transaction's pipeline has ended (see ``Store.enqueue``)."""
    if action not in (PUBLISH, RETRACT):
        raise ValueError(f"action must be {PUBLISH!r} or {RETRACT!r}, not {action!r}")
    return conn.execute(
        "INSERT INTO outbox (node, item_id, payload, incident, version, signer_subject, signer_fingerprint,"
        " source, status, created_at, action, custody) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " RETURNING id",
        (
            item.node,
            item.item_id,
            item.xml,
            incidents.to_json(item.incident),
            item.version,
            item.signer.subject,
            item.signer.fingerprint,
            source,
            PENDING,
            later_than(None),
            action,
            custody.to_json(item.custody),
        ),
    )


def pending(conn: Connection, limit: int, exclude: Collection[int] = ()) -> list[OutboxItem]:
    if not exclude:
        rows = conn.execute(
            "SELECT * FROM outbox WHERE status = ? ORDER BY id LIMIT ?", (PENDING, limit)
        ).fetchall()
    else:  # one parameter for any number of ids
        others, ids = conn.dialect.one_of("id", sorted(exclude), negate=True)
        rows = conn.execute(
            f"SELECT * FROM outbox WHERE status = ? AND {others} ORDER BY id LIMIT ?", (PENDING, ids, limit)
        ).fetchall()
    return [_item(row) for row in rows]


def ids_for_source(conn: Connection, source: str) -> list[int]:
    rows = conn.execute("SELECT id FROM outbox WHERE source = ? ORDER BY id", (source,))
    return [row["id"] for row in rows]


def get(conn: Connection, item: int) -> OutboxItem | None:
    row = conn.execute("SELECT * FROM outbox WHERE id = ?", (item,)).fetchone()
    return None if row is None else _item(row)


def mark_published(conn: Connection, items: Sequence[int], *, service: str) -> None:
    """Mark published and upsert our own entries (origin "local"), or for a retraction mark the entry
    deleted, in the order given. Call inside a transaction so that all of it happens or none does. The
    items are read in one statement and marked in one batch, their entries' rows read in one more and
    the new ones' ids taken in another (``entries.Round``): on PostgreSQL a round trip each for the whole
    round of the drain, not two or three per item, while the writers' lock is held."""
    condition, ids = conn.dialect.one_of("id", items)
    rows = {row["id"]: row for row in conn.execute(f"SELECT * FROM outbox WHERE {condition}", (ids,))}
    if missing := [item for item in items if item not in rows]:
        raise LookupError(f"outbox item {missing[0]} does not exist")
    conn.executemany(
        "UPDATE outbox SET status = ?, reason = NULL, service = ?, published_at = ? WHERE id = ?",
        [(PUBLISHED, service, later_than(None), item) for item in items],
    )
    keys = [(rows[item]["node"], rows[item]["item_id"]) for item in items]
    publishes = {key for item, key in zip(items, keys, strict=True) if rows[item]["action"] != RETRACT}
    upserts = entries.Round(conn, service, keys, publishes)
    for item in items:
        row = rows[item]
        if row["action"] == RETRACT:
            entries.mark_deleted(conn, service, row["node"], row["item_id"])
            continue
        signed = SignedItem(row["node"], row["item_id"], bytes(row["payload"]),
                            incidents.from_json(row["incident"]), row["version"],
                            Signer(row["signer_subject"], row["signer_fingerprint"]),
                            custody.from_json(row["custody"]))
        upserts.upsert(signed, origin="local")


def mark_failed(conn: Connection, item: int, reason: str) -> None:
    cursor = conn.execute("UPDATE outbox SET status = ?, reason = ? WHERE id = ?", (FAILED, reason, item))
    if cursor.rowcount == 0:
        raise LookupError(f"outbox item {item} does not exist")


def depth(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM outbox WHERE status = ?", (PENDING,)).fetchone()[0]
