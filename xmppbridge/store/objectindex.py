"""The STIX object index: which entries hold which STIX 2.1 object, by id, for TAXII's object by id and
its versions (TAXII 2.1 §5.5, §5.6) and ``match[id]`` (§3.5.1).

Indexed: the objects of an entry's indicators (``iodef.stixids.held_ids``: observables, detections and
their relationships to the incident), and its member's identity within its collection (every entry of a
member holds the identity, so its key is scoped by collection: a lookup walks one member's entries of
the one collection asked for, not all of them). Incidents have their own index
(``store.indicatorindex``, by the UUID the MISP feed uses too), and the TLP marking, the same in every
entry of a collection, needs none.

A key is the first 64 bits of the object's UUID, as a signed integer: a B-tree of integers is about half
the size of one of 36-character texts, and a collision only makes a candidate that the reader (which
renders the entries it finds and keeps the objects with the id asked for) sets aside. Written with the
entry, in its transaction. An entry's keys only grow: the keys of a version that a later one no longer
names stay, so that ``match[version]=all`` still finds that object in the entry's history.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from xmppbridge.iodef.indicators import Indicator
from xmppbridge.iodef.model import Incident
from xmppbridge.iodef.stixids import held_ids, identity_id, stix_id
from xmppbridge.store.sql import Connection

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS entry_objects (  -- one row per object id (its key) an entry holds
        key INTEGER NOT NULL,
        entry_id INTEGER NOT NULL REFERENCES entries (id),
        PRIMARY KEY (key, entry_id)
    ) WITHOUT ROWID
    """,
)


def key(object_id: str) -> int | None:
    """The index key of a STIX id (``type--uuid``), or None for what is not one."""
    _, dashes, text = object_id.partition("--")
    digits = text[:8] + text[9:13] + text[14:18]
    if not dashes or len(text) != 36 or len(digits) != 16:
        return None
    try:
        number = int(digits, 16)
    except ValueError:
        return None
    return number - (1 << 64) if number >= 1 << 63 else number


def key_in(object_id: str, collection: str) -> int | None:
    """The key under which entries of ``collection`` hold ``object_id``: an identity's is scoped."""
    if object_id.startswith("identity--"):
        return key(stix_id("taxii-scoped", object_id, collection))
    return key(object_id)


def keys(id_name: str, incident: str, indicators: Iterable[Indicator], collection: str) -> list[int]:
    """The keys of an entry's objects: its indicators' (``name`` and text of its IncidentID), and its
    member's identity in ``collection``."""
    held = held_ids(id_name, incident, indicators) | {identity_id(id_name)}
    return sorted({k for i in held if (k := key_in(i, collection)) is not None})


def index(conn: Connection, entry_id: int, incident: Incident, indicators: Iterable[Indicator],
          collection: str) -> None:
    """Add an entry's object keys (those it has already are kept); call inside the transaction that
    stores it. One statement, however many keys."""
    index_keys(conn, entry_id, keys(incident.id_name, incident.id, indicators, collection))


def index_keys(conn: Connection, entry_id: int, found: Sequence[int]) -> None:
    if not found:
        return
    table, values = conn.dialect.integers(found)
    conn.execute("INSERT INTO entry_objects (key, entry_id) SELECT value, CAST(? AS BIGINT)"
                 f" FROM {table} WHERE true ON CONFLICT DO NOTHING", (entry_id, values))


def holding(conn: Connection, object_id: str, collection: str, purposes: Collection[str] | None, *,
            limit: int) -> list[int]:
    """The ids of the newest ``limit`` live entries of ``collection`` (of ``purposes``; None: any) that may
    hold ``object_id``, newest first."""
    found = key_in(object_id, collection)
    if found is None or (purposes is not None and not purposes):
        return []
    where, params = ("", []) if purposes is None else conn.dialect.one_of("e.purpose_key", sorted(purposes))
    rows = conn.execute(
        "SELECT o.entry_id FROM entry_objects AS o JOIN entries AS e ON e.id = o.entry_id WHERE o.key = ?"
        " AND e.effective_restriction = ? AND e.deleted_at IS NULL" + (f" AND {where}" if where else "")
        + " ORDER BY o.entry_id DESC LIMIT ?", [found, collection, *([params] if where else []), limit])
    return [row["entry_id"] for row in rows]
