"""The indicator index: which entries name which indicator (``iodef.indicators``), for
``/search?indicator=VALUE``, with address and network containment; and which entries hold which
incident by its derived UUID (``iodef.uuids``), for the MISP feed's ``/misp/{uuid}.json``; and each
entry's indicators as extracted, in document order with their role and expectation (schema version 11),
so that STIX bundles and TAXII pages are built from rows, without parsing each signed document again.

Written with the entry, in its transaction, like the text index (``store.searchindex``). Addresses and
networks also get their range as two fixed-width hex strings (``low``, ``high``; IPv4 as IPv4-mapped
IPv6, RFC 4291 §2.5.5.2), which compare in text as the numbers do, on SQLite and PostgreSQL alike. Two
lookups, both by index, answer containment either way round:

- what lies inside the searched address or network: ``low`` between the range's ends;
- which stored networks contain it: one exact lookup per shorter prefix (at most 129), since a network
  containing it is the searched range widened to some prefix length.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Collection
from dataclasses import dataclass

from xmppbridge.iodef.indicators import Indicator, extract
from xmppbridge.iodef.model import Incident
from xmppbridge.iodef.parse import StoredDocument
from xmppbridge.iodef.uuids import incident_uuid
from xmppbridge.store.sql import Connection, Dialect

LISTS = """
    CREATE TABLE IF NOT EXISTS entry_indicator_lists (  -- one row per entry: of_document's answer, as JSON
        entry_id INTEGER PRIMARY KEY REFERENCES entries (id),
        indicators TEXT NOT NULL
    )
"""
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS entry_indicators (  -- one row per distinct (kind, value) of an entry
        entry_id INTEGER NOT NULL REFERENCES entries (id),
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        low TEXT,  -- addresses and networks: the first and last address, 32 hex digits
        high TEXT,
        PRIMARY KEY (entry_id, kind, value)
    )
    """,
    "CREATE INDEX IF NOT EXISTS entry_indicators_value ON entry_indicators (value)",
    "CREATE INDEX IF NOT EXISTS entry_indicators_low ON entry_indicators (low, high)",
    """
    CREATE TABLE IF NOT EXISTS entry_uuids (  -- several entries may hold one incident (e.g. relayed)
        uuid TEXT NOT NULL,
        entry_id INTEGER NOT NULL REFERENCES entries (id),
        PRIMARY KEY (uuid, entry_id)
    )
    """,
    LISTS,
)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def index(conn: Connection, entry_id: int, document: StoredDocument, incident: Incident, *,
          new: bool = False) -> tuple[Indicator, ...]:
    """(Re)index one entry's indicators and incident, and return its indicators; call inside the
    transaction that stores it. A document that does not parse has no indicators (the entry is still
    stored and listed, only not found by indicator)."""
    if not new:
        conn.execute("DELETE FROM entry_indicators WHERE entry_id = ?", (entry_id,))
        conn.execute("DELETE FROM entry_uuids WHERE entry_id = ?", (entry_id,))
    conn.execute("INSERT INTO entry_uuids (uuid, entry_id) VALUES (?, ?)",
                 (str(incident_uuid(incident.id_name, incident.id)), entry_id))
    found = list_indicators(conn, entry_id, document, new=new)
    rows = {(i.kind, i.value): _range(i.value) for i in found}
    conn.executemany(
        "INSERT INTO entry_indicators (entry_id, kind, value, low, high) VALUES (?, ?, ?, ?, ?)",
        [(entry_id, kind, value, *span) for (kind, value), span in rows.items()],
    )
    return found


def list_indicators(conn: Connection, entry_id: int, document: StoredDocument, *,
                    new: bool = False) -> tuple[Indicator, ...]:
    """Store (replacing) and return the indicators of one entry's document, in order; none for a document
    that does not parse, which is what the STIX conversion makes of one (the incident alone)."""
    found = () if document.root is None else extract(document.root)
    if not new:
        conn.execute("DELETE FROM entry_indicator_lists WHERE entry_id = ?", (entry_id,))
    conn.execute("INSERT INTO entry_indicator_lists (entry_id, indicators) VALUES (?, ?)",
                 (entry_id, _to_json(found)))
    return found


def indicator_lists(conn: Connection, entry_ids: Collection[int]) -> dict[int, tuple[Indicator, ...]]:
    """The stored indicators of each of ``entry_ids`` that has them, in one statement."""
    if not entry_ids:
        return {}
    condition, ids = conn.dialect.one_of("entry_id", sorted(set(entry_ids)))
    rows = conn.execute(f"SELECT entry_id, indicators FROM entry_indicator_lists WHERE {condition}", (ids,))
    return {row["entry_id"]: from_json(row["indicators"]) for row in rows}


def _to_json(found: tuple[Indicator, ...]) -> str:
    # Positional and compact: a page of 50 entries decodes 500 of these.
    rows = [[i.kind, i.value, i.role, i.expectation, i.algorithm] for i in found]
    return json.dumps(rows, separators=(",", ":"))


def from_json(text: str) -> tuple[Indicator, ...]:
    return tuple(Indicator(kind, value, role, expectation, algorithm)
                 for kind, value, role, expectation, algorithm in json.loads(text))


def holding(conn: Connection, incident: str) -> list[int]:
    """The ids of the entries holding the incident whose derived UUID is ``incident``, oldest first."""
    rows = conn.execute("SELECT entry_id FROM entry_uuids WHERE uuid = ? ORDER BY entry_id", (incident,))
    return [row["entry_id"] for row in rows]


def live_holding(conn: Connection, incident: str, other_than: str) -> list[int]:
    """``holding``, without the deleted entries and those of service ``other_than``."""
    rows = conn.execute("SELECT u.entry_id FROM entry_uuids u JOIN entries e ON e.id = u.entry_id"
                        " WHERE u.uuid = ? AND e.deleted_at IS NULL AND e.service <> ? ORDER BY u.entry_id",
                        (incident, other_than))
    return [row["entry_id"] for row in rows]


@dataclass(frozen=True)
class IndicatorQuery:
    """What ``/search?indicator=`` asked for: an address or network (matched by containment either way),
    or any other value (matched exactly, and in lower case: names and e-mail are stored lower-case)."""

    text: str

    @property
    def network(self) -> IPNetwork | None:
        try:
            return ipaddress.ip_network(self.text.strip(), strict=False)
        except ValueError:
            return None

    def condition(self, dialect: Dialect) -> tuple[str, list[object]]:
        """An SQL condition on ``e.id`` and its parameters."""
        network = self.network
        if network is None:
            found, values = dialect.one_of("value", sorted({self.text.strip(), self.text.strip().lower()}))
            return f"e.id IN (SELECT entry_id FROM entry_indicators WHERE {found})", [values]
        low, high = _ends(network)
        containing, wider = dialect.one_of("value", [str(n) for n in _supernets(network)])
        return (
            "e.id IN (SELECT entry_id FROM entry_indicators WHERE low >= ? AND low <= ? AND high <= ?"
            f" UNION SELECT entry_id FROM entry_indicators WHERE {containing})",
            [low, high, high, wider],
        )


def _range(value: str) -> tuple[str | None, str | None]:
    try:
        return _ends(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return None, None


def _ends(network: IPNetwork) -> tuple[str, str]:
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4:  # ::ffff:a.b.c.d
        first, last = first | 0xFFFF_0000_0000, last | 0xFFFF_0000_0000
    return f"{first:032x}", f"{last:032x}"


def _supernets(network: IPNetwork) -> list[IPNetwork]:
    """``network`` and every network that contains it."""
    return [network.supernet(new_prefix=length) for length in range(network.prefixlen + 1)]
