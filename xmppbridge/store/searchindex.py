"""Search index maintenance: full text of the Description elements, AlternativeID and RelatedActivity ids.

Kept beside ``entries`` and written in the same transaction as the entry, so the index never lags.
The queries are in ``store.search``.
"""

from __future__ import annotations

from xmppbridge.iodef.model import NS_V1, NS_V2, Incident
from xmppbridge.iodef.parse import StoredDocument
from xmppbridge.store import fulltext
from xmppbridge.store.sql import Connection, Dialect

_IDS = (
    """
    CREATE TABLE IF NOT EXISTS entry_ids (  -- IncidentIDs an entry refers to, one row each
        entry_id INTEGER NOT NULL REFERENCES entries (id),
        kind TEXT NOT NULL CHECK (kind IN ('alternative', 'related')),
        name TEXT NOT NULL,
        value TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS entry_ids_value ON entry_ids (kind, value)",
    "CREATE INDEX IF NOT EXISTS entry_ids_entry ON entry_ids (entry_id)",
)


def schema(dialect: Dialect) -> tuple[str, ...]:
    """The text of every IODEF Description in the document (``store.fulltext``), and the ids."""
    return (*fulltext.schema(dialect), *_IDS)


_DESCRIPTIONS = (f"{{{NS_V1}}}Description", f"{{{NS_V2}}}Description")


def description_text(xml: bytes) -> str:
    """The text of every Description element, one per line; "" for a document that does not parse
    (the entry is still stored and listed, only not found by text)."""
    return descriptions(StoredDocument(xml))


def descriptions(document: StoredDocument) -> str:
    root = document.root
    if root is None:
        return ""
    texts = (" ".join(str(element.xpath("string()")).split()) for element in root.iter(*_DESCRIPTIONS))
    return "\n".join(text for text in texts if text)


def index(conn: Connection, entry_id: int, document: StoredDocument, incident: Incident, *,
          new: bool = False) -> None:
    """(Re)index one entry. Call inside the transaction that stores it. ``new``: the entry was just
    inserted, so there is nothing of it to remove first (entries are never deleted, ids never reused)."""
    fulltext.index(conn, entry_id, descriptions(document), new=new)
    if not new:
        conn.execute("DELETE FROM entry_ids WHERE entry_id = ?", (entry_id,))
    conn.executemany(
        "INSERT INTO entry_ids (entry_id, kind, name, value) VALUES (?, ?, ?, ?)",
        [(entry_id, "alternative", name, value) for name, value in incident.alternative_ids]
        + [(entry_id, "related", name, value) for name, value in incident.related_ids],
    )

