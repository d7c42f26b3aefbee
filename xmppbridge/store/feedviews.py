"""Reading the change log as feeds: current pages, archive ranges, and an entry's revisions.

Rows are joined with the entry as it was at that change (its revision), so a page or an archive shows
each entry exactly as it stood then; documents themselves are not loaded (``Entry.xml`` is empty),
since feeds only link to them: a page reads entry rows, which hold no document (``entries.DOCUMENTS``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from xmppbridge.iodef.indicators import Indicator
from xmppbridge.store import incidents, indicatorindex
from xmppbridge.store.db import parse_time, to_text
from xmppbridge.store.entries import Entry, from_row, get
from xmppbridge.store.sql import Connection, Row


@dataclass(frozen=True)
class Change:
    """One row of a collection's change log with the entry as of that change.

    ``entry.updated_at`` is the time of the change, ``entry.revision`` the document version it showed
    and ``entry.deleted`` whether it is a tombstone (deleted, or moved to another collection).
    """

    collection: str
    seq: int
    entry: Entry


@dataclass(frozen=True)
class Revision:
    """One document version of an entry (``entry.xml`` loaded); ``superseded_at`` None for the current."""

    entry: Entry
    superseded_at: datetime | None


_ENTRY_COLUMNS = (
    "id", "service", "node", "item_id", "origin", "version", "signer_subject", "signer_fingerprint",
    "received_at", "updated_at", "deleted_at", "published_at", "revision", "custody", *incidents.COLUMNS,
)
_SELECT = (
    "SELECT c.collection AS c_collection, c.seq AS c_seq, c.revision AS c_revision, c.deleted AS c_deleted,"
    " c.changed_at AS c_changed_at, "
    + ", ".join(f"e.{name}" for name in _ENTRY_COLUMNS)
    + ", v.version AS v_version, v.signer_subject AS v_signer_subject,"
    " v.signer_fingerprint AS v_signer_fingerprint, v.incident AS v_incident"
    " FROM changes AS c JOIN entries AS e ON e.id = c.entry_id"
    " LEFT JOIN entry_versions AS v ON c.revision <> e.revision AND v.entry_id = c.entry_id"
    " AND v.number = c.revision"
)


def _change(row: Row) -> Change:
    """The entry as this change left it: its revision, time and deletion, and for an older revision the
    version, signer and Incident stored with that revision."""
    overrides: dict[str, Any] = {"updated_at": parse_time(row["c_changed_at"]),
                                 "deleted": bool(row["c_deleted"]), "revision": row["c_revision"]}
    if row["v_version"] is not None:  # an older revision than the entry's current one
        overrides |= {"version": row["v_version"], "signer_subject": row["v_signer_subject"],
                      "signer_fingerprint": row["v_signer_fingerprint"]}
        if row["v_incident"] is not None:  # None: stored before schema version 2; the current one stands in
            overrides["incident"] = incidents.from_json(row["v_incident"])
    return Change(row["c_collection"], row["c_seq"], from_row(row, **overrides))


def _purpose_filter(purposes: Collection[str] | None) -> tuple[str, list[str]]:
    """SQL condition on the change's purpose; None: every purpose."""
    if purposes is None:
        return "", []
    values = sorted(set(purposes))
    if not values:
        return " AND FALSE", []
    return f" AND c.purpose IN ({', '.join('?' for _ in values)})", values


def current_page(
    conn: Connection,
    collection: str,
    purposes: Collection[str] | None,
    *,
    limit: int,
    before: int | None = None,
    after: int | None = None,
) -> list[Change]:
    """The current state of ``collection`` (live entries and tombstones), newest change first: the
    ``limit`` rows below sequence number ``before``, or the ``limit`` rows just above ``after``."""
    where, params = _purpose_filter(purposes)
    if after is not None:
        rows = conn.execute(
            f"{_SELECT} WHERE c.collection = ? AND c.current = 1{where} AND c.seq > ?"
            " ORDER BY c.seq ASC LIMIT ?",
            [collection, *params, after, limit],
        ).fetchall()
        rows.reverse()
    else:
        rows = conn.execute(
            f"{_SELECT} WHERE c.collection = ? AND c.current = 1{where} AND c.seq < ?"
            " ORDER BY c.seq DESC LIMIT ?",
            [collection, *params, before if before is not None else 2**63 - 1, limit],
        ).fetchall()
    return [_change(row) for row in rows]


def has_current(
    conn: Connection, collection: str, purposes: Collection[str] | None, *, above: int | None = None,
    below: int | None = None,
) -> bool:
    """Whether the current state has a row above ``above`` (or below ``below``)."""
    where, params = _purpose_filter(purposes)
    if above is not None:
        where, params = where + " AND c.seq > ?", [*params, above]
    if below is not None:
        where, params = where + " AND c.seq < ?", [*params, below]
    row = conn.execute(
        f"SELECT 1 FROM changes AS c WHERE c.collection = ? AND c.current = 1{where} LIMIT 1",
        [collection, *params],
    ).fetchone()
    return row is not None


def archive(
    conn: Connection, collection: str, purposes: Collection[str] | None, first: int, last: int
) -> list[Change]:
    """Every change with sequence number ``first`` to ``last``, newest first (current or not)."""
    where, params = _purpose_filter(purposes)
    rows = conn.execute(
        f"{_SELECT} WHERE c.collection = ? AND c.seq BETWEEN ? AND ?{where} ORDER BY c.seq DESC",
        [collection, first, last, *params],
    ).fetchall()
    return [_change(row) for row in rows]


def last_seq(conn: Connection, collection: str) -> int:
    """The highest sequence number of ``collection``; 0 when it never had a change."""
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM changes WHERE collection = ?", (collection,))
    return row.fetchone()[0]


def last_seqs(conn: Connection, collections: Collection[str]) -> dict[str, int]:
    """``last_seq`` of each of ``collections``, in one statement of one indexed max() each (a GROUP BY
    would read every row of the collections)."""
    names = sorted(set(collections))
    if not names:
        return {}
    one = ("SELECT CAST(? AS TEXT) AS collection,"
           " (SELECT coalesce(max(seq), 0) FROM changes WHERE collection = ?) AS seq")
    rows = conn.execute(" UNION ALL ".join([one] * len(names)), [n for name in names for n in (name, name)])
    return {row["collection"]: int(row["seq"]) for row in rows.fetchall()}


def revisions(conn: Connection, entry_id: int) -> list[Revision]:
    """Every document version of an entry, newest first; [] when the entry does not exist."""
    current = get(conn, entry_id)
    if current is None:
        return []
    found = [Revision(replace(current, deleted=False), None)]
    for old in conn.execute(
        "SELECT * FROM entry_versions WHERE entry_id = ? ORDER BY number DESC", (entry_id,)
    ).fetchall():
        incident = incidents.from_json(old["incident"]) if old["incident"] is not None else current.incident
        entry = replace(
            current,
            incident=incident,
            version=old["version"],
            xml=bytes(old["xml"]),
            signer_subject=old["signer_subject"],
            signer_fingerprint=old["signer_fingerprint"],
            updated_at=parse_time(old["updated_at"]),
            deleted=False,
            revision=old["number"],
        )
        found.append(Revision(entry, parse_time(old["superseded_at"])))
    return found


@dataclass(frozen=True)
class Document:
    """An entry's current document, and its indicators as stored (None if the index has none for it)."""

    xml: bytes
    indicators: tuple[Indicator, ...] | None


def current_documents(conn: Connection, entry_ids: Collection[int]) -> dict[int, Document]:
    """The current document of each of ``entry_ids`` (pages and search results leave them out) with its
    stored indicators, in one statement: for exports, which read the documents of a whole page."""
    if not entry_ids:
        return {}
    condition, ids = conn.dialect.one_of("d.entry_id", sorted(set(entry_ids)))
    rows = conn.execute("SELECT d.entry_id, d.xml, i.indicators FROM documents AS d LEFT JOIN"
                        f" entry_indicator_lists AS i ON i.entry_id = d.entry_id WHERE {condition}",
                        (ids,)).fetchall()
    return {row["entry_id"]: Document(bytes(row["xml"]), None if row["indicators"] is None
                                      else indicatorindex.from_json(row["indicators"])) for row in rows}


def seq_at(conn: Connection, collection: str, moment: datetime) -> int:
    """The last change number of ``collection`` made at or before ``moment`` (0 if none): where a
    reader that has seen everything added until then goes on (TAXII ``added_after``)."""
    row = conn.execute("SELECT coalesce(max(seq), 0) AS seq FROM changes WHERE collection = ?"
                       " AND changed_at <= ?", (collection, to_text(moment))).fetchone()
    return int(row["seq"])


def entries_holding(conn: Connection, incident: str) -> list[Entry]:
    """The entries holding an incident, by its derived UUID (``store.indicatorindex``), with documents."""
    return [entry for i in indicatorindex.holding(conn, incident) if (entry := get(conn, i)) is not None]


def revision_xml(conn: Connection, entry_id: int, number: int) -> bytes | None:
    """The document of revision ``number`` of an entry, or None."""
    row = conn.execute(
        "SELECT d.xml FROM documents AS d JOIN entries AS e ON e.id = d.entry_id WHERE e.id = ?"
        " AND e.revision = ? UNION ALL SELECT xml FROM entry_versions WHERE entry_id = ? AND number = ?",
        (entry_id, number, entry_id, number),
    ).fetchone()
    return None if row is None else bytes(row["xml"])
