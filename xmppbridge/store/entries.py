"""Entries: mirrored remote items and our own published ones, one row per (service, node, item_id).

Functions take an open connection and run plain SQL; the ``Store`` facade owns transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from xmppbridge.iodef.model import Incident
from xmppbridge.store import incidents
from xmppbridge.store.db import from_text, later_than, parse_time, to_text

Origin = Literal["local", "remote"]
UpsertResult = Literal["new", "updated", "unchanged"]


@dataclass(frozen=True)
class Entry:
    id: int
    service: str
    node: str
    item_id: str
    origin: str  # "local" | "remote"
    incident: Incident
    version: str  # IODEF "1.0" | "2.0"
    xml: bytes  # the signed IODEF document as received / published
    signer_subject: str
    signer_fingerprint: str
    received_at: datetime  # first stored; fixed
    updated_at: datetime  # last change
    deleted: bool
    published_at: datetime | None = None  # ReportTime/GenerationTime of the first version; fixed

    @property
    def restriction(self) -> str:
        """Who may see it: the narrowest marking inside the incident (its feed collection)."""
        return incidents.audience(self.incident)


@dataclass(frozen=True)
class EntryVersion:
    """A superseded version of an entry's document."""

    entry_id: int
    version: str
    xml: bytes
    signer_subject: str
    signer_fingerprint: str
    updated_at: datetime  # when this version had been stored
    superseded_at: datetime


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        id=row["id"],
        service=row["service"],
        node=row["node"],
        item_id=row["item_id"],
        origin=row["origin"],
        incident=incidents.from_columns(row),
        version=row["version"],
        xml=bytes(row["xml"]),
        signer_subject=row["signer_subject"],
        signer_fingerprint=row["signer_fingerprint"],
        received_at=parse_time(row["received_at"]),
        updated_at=parse_time(row["updated_at"]),
        deleted=row["deleted_at"] is not None,
        published_at=from_text(row["published_at"]),
    )


def upsert(
    conn: sqlite3.Connection,
    *,
    service: str,
    node: str,
    item_id: str,
    origin: Origin,
    incident: Incident,
    version: str,
    xml: bytes,
    signer_subject: str,
    signer_fingerprint: str,
) -> UpsertResult:
    """Insert, replace (keeping the old document in entry_versions) or leave alone. Call inside a
    transaction. A deleted entry that comes back is undeleted and counts as updated."""
    if origin not in ("local", "remote"):
        raise ValueError(f"origin must be 'local' or 'remote', not {origin!r}")
    row = conn.execute(
        "SELECT * FROM entries WHERE service = ? AND node = ? AND item_id = ?", (service, node, item_id)
    ).fetchone()
    fields = {
        "origin": origin,
        "version": version,
        "xml": xml,
        "signer_subject": signer_subject,
        "signer_fingerprint": signer_fingerprint,
        "effective_restriction": incidents.audience(incident),
        **incidents.to_columns(incident),
    }
    if row is None:
        stamp = later_than(None)
        fields |= {
            "service": service,
            "node": node,
            "item_id": item_id,
            "published_at": to_text(incident.published_time),
            "received_at": stamp,
            "updated_at": stamp,
        }
        names = ", ".join(fields)
        marks = ", ".join(f":{name}" for name in fields)
        conn.execute(f"INSERT INTO entries ({names}) VALUES ({marks})", fields)
        return "new"

    same_xml = bytes(row["xml"]) == xml
    if same_xml and row["deleted_at"] is None:
        return "unchanged"
    stamp = later_than(row["updated_at"])
    if not same_xml:
        conn.execute(
            "INSERT INTO entry_versions (entry_id, version, xml, signer_subject, signer_fingerprint,"
            " updated_at, superseded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                row["id"],
                row["version"],
                row["xml"],
                row["signer_subject"],
                row["signer_fingerprint"],
                row["updated_at"],
                stamp,
            ),
        )
    fields |= {"updated_at": stamp, "deleted_at": None, "id": row["id"]}
    assignments = ", ".join(f"{name} = :{name}" for name in fields if name != "id")
    conn.execute(f"UPDATE entries SET {assignments} WHERE id = :id", fields)
    return "updated"


def mark_deleted(conn: sqlite3.Connection, service: str, node: str, item_id: str) -> bool:
    """Hide an entry (retracted upstream). True when a visible entry was hidden."""
    row = conn.execute(
        "SELECT id, updated_at FROM entries WHERE service = ? AND node = ? AND item_id = ?"
        " AND deleted_at IS NULL",
        (service, node, item_id),
    ).fetchone()
    if row is None:
        return False
    stamp = later_than(row["updated_at"])
    conn.execute("UPDATE entries SET deleted_at = ?, updated_at = ? WHERE id = ?", (stamp, stamp, row["id"]))
    return True


def _restriction_filter(restrictions: Collection[str] | None) -> tuple[str, list[str]]:
    """SQL condition + parameters on the effective restriction; ``None``: all, empty collection: none."""
    if restrictions is None:
        return "deleted_at IS NULL", []
    values = sorted(set(restrictions))
    if not values:
        return "0", []
    marks = ", ".join("?" for _ in values)
    return f"deleted_at IS NULL AND effective_restriction IN ({marks})", values


def list_entries(
    conn: sqlite3.Connection, *, restrictions: Collection[str] | None, limit: int, offset: int
) -> list[Entry]:
    where, params = _restriction_filter(restrictions)
    rows = conn.execute(
        f"SELECT * FROM entries WHERE {where} ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [_entry(row) for row in rows]


def count(conn: sqlite3.Connection, *, restrictions: Collection[str] | None) -> int:
    where, params = _restriction_filter(restrictions)
    return conn.execute(f"SELECT count(*) FROM entries WHERE {where}", params).fetchone()[0]


def get(conn: sqlite3.Connection, entry_id: int) -> Entry | None:
    """By row id, deleted or not (callers decide what a deleted entry means to them)."""
    row = conn.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
    return None if row is None else _entry(row)


def find(conn: sqlite3.Connection, service: str, node: str, item_id: str) -> Entry | None:
    row = conn.execute(
        "SELECT * FROM entries WHERE service = ? AND node = ? AND item_id = ?", (service, node, item_id)
    ).fetchone()
    return None if row is None else _entry(row)


def versions(conn: sqlite3.Connection, entry_id: int) -> list[EntryVersion]:
    """Superseded documents of one entry, oldest first."""
    rows = conn.execute("SELECT * FROM entry_versions WHERE entry_id = ? ORDER BY id", (entry_id,)).fetchall()
    return [
        EntryVersion(
            entry_id=row["entry_id"],
            version=row["version"],
            xml=bytes(row["xml"]),
            signer_subject=row["signer_subject"],
            signer_fingerprint=row["signer_fingerprint"],
            updated_at=parse_time(row["updated_at"]),
            superseded_at=parse_time(row["superseded_at"]),
        )
        for row in rows
    ]
