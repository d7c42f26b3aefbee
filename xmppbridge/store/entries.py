"""Entries: mirrored remote items and our own published ones, one row per (service, node, item_id).

Every change also goes to the feed's change log (``changelog``) and the search index (``searchindex``)
in the same transaction. Document versions are numbered (``revision``): the current one is in
``documents``, superseded ones in ``entry_versions`` with the Incident as it was.

Functions take an open connection and run plain SQL; the ``Store`` facade owns transactions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from xmppbridge.errors import InputRejected
from xmppbridge.iodef.indicators import Indicator, of_document
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.iodef.model import Incident
from xmppbridge.iodef.parse import StoredDocument
from xmppbridge.store import changelog, custody, incidents, indicatorindex, objectindex, searchindex
from xmppbridge.store.db import from_text, inserted_id, later_than, parse_time, to_text
from xmppbridge.store.items import Custodian, SignedItem
from xmppbridge.store.sql import Connection, Row

Origin = Literal["local", "remote"]
UpsertResult = Literal["new", "updated", "unchanged"]

# The current document of each entry (schema version 5). Not in the entry row: feed pages and searches
# read 50 entry rows and no document, and ~0.5 KB rows without their ~3 KB documents share disk pages.
DOCUMENTS = """
    CREATE TABLE IF NOT EXISTS documents (
        entry_id INTEGER PRIMARY KEY REFERENCES entries (id),
        xml BLOB NOT NULL
    )
"""
# Entries with their documents (``from_row`` fills ``Entry.xml``); every entry has one.
_WITH_DOCUMENT = "SELECT e.*, d.xml FROM entries AS e JOIN documents AS d ON d.entry_id = e.id"


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
    revision: int = 1  # number of this document version, 1 for the first
    # A relayed document's custody chain, originator first (schema version 10); empty when it came
    # straight from its signer. The current document's: older revisions are shown with it too.
    custody: tuple[Custodian, ...] = ()
    # The document's indicators as the index stored them (``indicatorindex.indicator_lists``), when read
    # with it: the exports use them instead of parsing ``xml``. None when not read.
    indicators: tuple[Indicator, ...] | None = None

    @cached_property  # asked several times per entry of a feed page; the frozen incident cannot change it
    def restriction(self) -> str:
        """Who may see it: the narrowest marking inside the incident (its feed collection)."""
        return incidents.audience(self.incident)

    def indicator_list(self) -> tuple[Indicator, ...]:
        """The document's indicators, for the exports: as stored, if read with the entry (then no document
        is parsed), else extracted from ``xml``; none for a document that does not parse (stored ones do:
        a broken one still exports the incident alone, or no rows)."""
        if self.indicators is not None:
            return self.indicators
        try:
            return of_document(self.xml)
        except InputRejected:
            return ()


    def head(self) -> Head:
        incident = self.incident
        return Head(self.id, incident.id_name, incident.id, incident.title, incident.purpose,
                    self.restriction, self.published_at or self.received_at, self.updated_at)


@dataclass(frozen=True)
class Head:
    """What a list of incidents shows of a live entry (the MISP manifest: ``feed.misp``), which a store can
    read without the rest of its row (``search.heads``): a window of 10,000 entries made whole took most
    of the manifest's time building Incidents."""

    entry_id: int
    id_name: str
    incident_id: str
    title: str | None
    purpose: str
    restriction: str  # its collection, as ``Entry.restriction``
    stated: datetime  # the first version's ReportTime/GenerationTime (``published_at``), else first stored
    updated_at: datetime


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
    number: int = 0  # its revision number (Entry.revision when it was current)


def from_row(row: Row, **overrides: Any) -> Entry:
    """An ``entries`` row as an Entry; ``xml`` is empty when the query left the document out.
    ``overrides`` replace fields read from the row (the change log's view of an older revision)."""
    fields: dict[str, Any] = {
        "id": row["id"],
        "service": row["service"],
        "node": row["node"],
        "item_id": row["item_id"],
        "origin": row["origin"],
        "incident": incidents.from_columns(row),
        "version": row["version"],
        "xml": bytes(row["xml"]) if "xml" in row.keys() else b"",  # noqa: SIM118 - `in row` tests values
        "signer_subject": row["signer_subject"],
        "signer_fingerprint": row["signer_fingerprint"],
        "received_at": parse_time(row["received_at"]),
        "updated_at": parse_time(row["updated_at"]),
        "deleted": row["deleted_at"] is not None,
        "published_at": from_text(row["published_at"]),
        "revision": row["revision"],
        # Queries that list their columns (feed views, search) may leave it out.
        "custody": custody.from_json(row["custody"]) if "custody" in row.keys() else (),  # noqa: SIM118
    }
    return Entry(**{**fields, **overrides})


def upsert(conn: Connection, service: str, item: SignedItem, *, origin: Origin) -> UpsertResult:
    """Insert, replace (keeping the old document in entry_versions) or leave alone. Call inside a
    transaction. A deleted entry that comes back is undeleted and counts as updated.

    Changes are logged in the collection of the entry's audience; an entry whose audience changes
    leaves a tombstone in its old collection, so that readers of that feed learn it is gone there."""
    return _store(conn, service, item, origin, _find_row(conn, service, item.node, item.item_id), None)


class Round:
    """Upserts of one round of the outbox drain, their entry rows read in one statement and the ids of
    new ones taken in one more, instead of two waits for each item (its row, then its new id): on
    PostgreSQL every other statement of an upsert is pipelined, and these waits are what the writers'
    lock is held for. ``keys`` are all the round's (node, item id), retractions too, ``upserts`` those
    published. A key that comes more than once has its row read when its turn comes (an earlier turn
    changed it); each key without an entry makes at most one, so its id is among those taken."""

    def __init__(self, conn: Connection, service: str, keys: Sequence[tuple[str, str]],
                 upserts: Collection[tuple[str, str]]) -> None:
        self.conn, self.service = conn, service
        counted = Counter(keys)
        self.once = {key for key in upserts if counted[key] == 1}
        self.rows = _find_rows(conn, service, upserts)
        self.ids = iter(_new_ids(conn, len(set(upserts) - self.rows.keys())))

    def upsert(self, item: SignedItem, *, origin: Origin) -> UpsertResult:
        key = (item.node, item.item_id)
        row = self.rows.get(key) if key in self.once else _find_row(self.conn, self.service, *key)
        return _store(self.conn, self.service, item, origin, row, None if row is not None else next(self.ids))


def _store(conn: Connection, service: str, item: SignedItem, origin: Origin, row: Row | None,
           new_id: int | None) -> UpsertResult:
    """``upsert`` with the entry's row read (None: no entry yet), and for a new entry its id if taken
    already (None: the insert reports it)."""
    if origin not in ("local", "remote"):
        raise ValueError(f"origin must be 'local' or 'remote', not {origin!r}")
    node, item_id, incident, xml = item.node, item.item_id, item.incident, item.xml
    collection, purpose = incidents.audience(incident), canonical_purpose(incident.purpose)
    fields = {
        "origin": origin,
        "version": item.version,
        "signer_subject": item.signer.subject,
        "signer_fingerprint": item.signer.fingerprint,
        "custody": custody.to_json(item.custody),
        "effective_restriction": collection,
        "purpose_key": purpose,
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
        if new_id is not None:
            fields["id"] = new_id
        names = ", ".join(fields)
        marks = ", ".join(f":{name}" for name in fields)
        if new_id is None:
            entry_id = inserted_id(conn.execute(
                f"INSERT INTO entries ({names}) VALUES ({marks}) RETURNING id", fields))
        else:  # nothing to wait for
            conn.execute(f"INSERT INTO entries ({names}) VALUES ({marks})", fields)
            entry_id = new_id
        conn.execute("INSERT INTO documents (entry_id, xml) VALUES (?, ?)", (entry_id, xml))
        changelog.append(conn, entry_id=entry_id, collection=collection, revision=1, purpose=purpose,
                         deleted=False, changed_at=stamp, first=True)
        document = StoredDocument(xml)  # parsed once for both indexes
        searchindex.index(conn, entry_id, document, incident, new=True)
        found = indicatorindex.index(conn, entry_id, document, incident, new=True)
        objectindex.index(conn, entry_id, incident, found, collection)
        return "new"

    same_xml = bytes(row["xml"]) == xml
    if same_xml and row["deleted_at"] is None:
        return "unchanged"
    stamp = later_than(row["updated_at"])
    revision = row["revision"]
    if not same_xml:
        conn.execute(
            "INSERT INTO entry_versions (entry_id, version, xml, signer_subject, signer_fingerprint,"
            " updated_at, superseded_at, number, incident) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["id"],
                row["version"],
                row["xml"],
                row["signer_subject"],
                row["signer_fingerprint"],
                row["updated_at"],
                stamp,
                revision,
                incidents.to_json(incidents.from_columns(row)),
            ),
        )
        conn.execute("UPDATE documents SET xml = ? WHERE entry_id = ?", (xml, row["id"]))
        revision += 1
    fields |= {"updated_at": stamp, "deleted_at": None, "revision": revision, "id": row["id"]}
    assignments = ", ".join(f"{name} = :{name}" for name in fields if name != "id")
    conn.execute(f"UPDATE entries SET {assignments} WHERE id = :id", fields)
    if row["effective_restriction"] != collection and row["deleted_at"] is None:
        changelog.append(conn, entry_id=row["id"], collection=row["effective_restriction"],
                         revision=row["revision"], purpose=row["purpose_key"], deleted=True, changed_at=stamp)
    changelog.append(conn, entry_id=row["id"], collection=collection, revision=revision, purpose=purpose,
                     deleted=False, changed_at=stamp)
    document = StoredDocument(xml)
    searchindex.index(conn, row["id"], document, incident)
    if not same_xml:
        found = indicatorindex.index(conn, row["id"], document, incident)
        objectindex.index(conn, row["id"], incident, found, collection)
    return "updated"


def mark_deleted(conn: Connection, service: str, node: str, item_id: str) -> bool:
    """Hide an entry (retracted upstream). True when a visible entry was hidden."""
    row = conn.execute(
        "SELECT id, updated_at, effective_restriction, revision, purpose_key FROM entries"
        " WHERE service = ? AND node = ? AND item_id = ? AND deleted_at IS NULL",
        (service, node, item_id),
    ).fetchone()
    if row is None:
        return False
    stamp = later_than(row["updated_at"])
    conn.execute("UPDATE entries SET deleted_at = ?, updated_at = ? WHERE id = ?", (stamp, stamp, row["id"]))
    changelog.append(conn, entry_id=row["id"], collection=row["effective_restriction"],
                     revision=row["revision"], purpose=row["purpose_key"], deleted=True, changed_at=stamp)
    return True


def _restriction_filter(restrictions: Collection[str] | None) -> tuple[str, list[str]]:
    """SQL condition + parameters on the effective restriction; ``None``: all, empty collection: none."""
    if restrictions is None:
        return "deleted_at IS NULL", []
    values = sorted(set(restrictions))
    if not values:
        return "FALSE", []
    marks = ", ".join("?" for _ in values)
    return f"deleted_at IS NULL AND effective_restriction IN ({marks})", values


def list_entries(
    conn: Connection, *, restrictions: Collection[str] | None, limit: int, offset: int
) -> list[Entry]:
    where, params = _restriction_filter(restrictions)
    rows = conn.execute(
        f"{_WITH_DOCUMENT} WHERE {where} ORDER BY e.updated_at DESC, e.id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [from_row(row) for row in rows]


def count(conn: Connection, *, restrictions: Collection[str] | None) -> int:
    where, params = _restriction_filter(restrictions)
    return conn.execute(f"SELECT count(*) FROM entries WHERE {where}", params).fetchone()[0]


def get(conn: Connection, entry_id: int) -> Entry | None:
    """By row id, deleted or not (callers decide what a deleted entry means to them)."""
    row = conn.execute(f"{_WITH_DOCUMENT} WHERE e.id = ?", (entry_id,)).fetchone()
    return None if row is None else from_row(row)


def find(conn: Connection, service: str, node: str, item_id: str) -> Entry | None:
    row = _find_row(conn, service, node, item_id)
    return None if row is None else from_row(row)


def _find_rows(conn: Connection, service: str, keys: Collection[tuple[str, str]]
               ) -> dict[tuple[str, str], Row]:
    """The rows of those of ``keys`` (node, item id) that have an entry, with their documents, in one
    statement that looks each key up in the UNIQUE index."""
    if not keys:
        return {}
    table, params = conn.dialect.keys_table(("node", "item_id"), keys)
    # One index look-up per key, whatever the planner's statistics say. PostgreSQL: a LATERAL subquery
    # that LIMIT keeps from being flattened (as a plain join, a burst's entries not yet analysed made
    # it hash-join all of the service's entries). SQLite has no LATERAL; its CROSS JOIN reads the keys
    # first (with a plain JOIN it scanned the service's entries for every round).
    if conn.dialect.name == "postgresql":
        entry = ("CROSS JOIN LATERAL (SELECT * FROM entries WHERE service = ? AND node = k.node"
                 " AND item_id = k.item_id LIMIT 1) AS e")
        where = ""
    else:
        entry = "CROSS JOIN entries AS e"
        where = " WHERE e.service = ? AND e.node = k.node AND e.item_id = k.item_id"
    rows = conn.execute(f"SELECT e.*, d.xml FROM {table} {entry}"
                        f" JOIN documents AS d ON d.entry_id = e.id{where}", [*params, service]).fetchall()
    return {(row["node"], row["item_id"]): row for row in rows}


def _new_ids(conn: Connection, count: int) -> list[int]:
    """Ids for ``count`` new entries, taken in one statement. PostgreSQL: from the id column's own
    sequence, as an insert would. SQLite: after the largest, as its row ids go; safe because writers go
    one at a time (``changelog.append`` says how) and entries are never deleted."""
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = conn.execute("SELECT nextval(pg_get_serial_sequence('entries', 'id'))"
                            " FROM generate_series(1, ?)", (count,)).fetchall()
        return [row[0] for row in rows]
    last = conn.execute("SELECT coalesce(max(id), 0) FROM entries").fetchone()[0]
    return list(range(last + 1, last + 1 + count))


def _find_row(conn: Connection, service: str, node: str, item_id: str) -> Row | None:
    """The entry's row and its document: the UNIQUE index, then the document by entry id."""
    return conn.execute(
        f"{_WITH_DOCUMENT} WHERE e.service = ? AND e.node = ? AND e.item_id = ?", (service, node, item_id)
    ).fetchone()


def versions(conn: Connection, entry_id: int) -> list[EntryVersion]:
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
            number=row["number"],
        )
        for row in rows
    ]
