"""Search over live entries: by category, IncidentID, AlternativeID, RelatedActivity, IODEF times (ranges)
and Description text, never finding what ``readable`` hides.

Every query must stay fast on a million entries without relying on ANALYZE statistics, so the SQL
decides the plan itself: text search walks the FTS index newest entry first, a time range walks that
time's index (results newest time first), anything else walks entries newest first; the access and
category filters are prefixed with ``+`` so that SQLite never prefers their low-selectivity index.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from xmppbridge.store import fulltext
from xmppbridge.store.db import parse_time, to_text
from xmppbridge.store.entries import Entry, Head, from_row
from xmppbridge.store.incidents import TIME_FIELDS
from xmppbridge.store.indicatorindex import IndicatorQuery
from xmppbridge.store.sql import Connection, Dialect

# restriction -> the purposes a reader may see in it (None: all of them)
Readable = Mapping[str, Collection[str] | None]

_COLUMNS = (
    "e.id, e.service, e.node, e.item_id, e.origin, e.version, e.signer_subject, e.signer_fingerprint,"
    " e.received_at, e.updated_at, e.deleted_at, e.published_at, e.revision, e.id_name, e.incident_id,"
    " e.instance, e.restriction_raw, e.restriction, e.purpose, e.report_time, e.generation_time,"
    " e.detect_time, e.start_time, e.end_time, e.title, e.alternative_ids, e.related_ids,"
    " e.narrowest_restriction, e.custody"
)
_WORD = re.compile(r"\w+")

# What ``_where`` reads to decide whether a reader may see an entry. Testing them on the table means
# reading one entry row per match, thousands of them spread over the table when counting; the indexes
# below carry them, so that counting reads index pages only.
_ACCESS_COLUMNS = "effective_restriction, purpose_key, deleted_at"
ACCESS_INDEX = "entries_access"  # by id: for matches found elsewhere (full-text search)
INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {ACCESS_INDEX} ON entries (id, {_ACCESS_COLUMNS})",
    # One per searchable time; ``id`` keeps the result order (time, then id) an index order.
    *(f"CREATE INDEX IF NOT EXISTS entries_{name}_covering ON entries ({name}, id, {_ACCESS_COLUMNS})"
      for name in TIME_FIELDS),
)


@dataclass(frozen=True)
class TimeRange:
    field: str  # one of store.incidents.TIME_FIELDS, e.g. "report_time"
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # inclusive

    def __post_init__(self) -> None:
        if self.field not in TIME_FIELDS:
            raise ValueError(f"unknown time field {self.field!r}; use one of {', '.join(TIME_FIELDS)}")


@dataclass(frozen=True)
class SearchQuery:
    """All given criteria must hold. ``text`` matches whole words of any Description, all of them."""

    restrictions: frozenset[str] | None = None
    purposes: frozenset[str] | None = None
    incident_id: str | None = None
    alternative_id: str | None = None
    related_id: str | None = None
    times: tuple[TimeRange, ...] = ()
    text: str | None = None
    indicator: IndicatorQuery | None = None  # an address or network (by containment), or a value


def _where(dialect: Dialect, query: SearchQuery, readable: Readable) -> tuple[str, list[object]]:
    conditions, params = ["e.deleted_at IS NULL"], []
    allowed: list[str] = []
    restriction = dialect.unindexed("e.effective_restriction")
    for name, purposes in sorted(readable.items()):
        if purposes is None:
            allowed.append(f"{restriction} = ?")
            params.append(name)
        elif purposes:
            marks = ", ".join("?" for _ in purposes)
            allowed.append(f"({restriction} = ? AND e.purpose_key IN ({marks}))")
            params += [name, *sorted(purposes)]
    conditions.append(f"({' OR '.join(allowed)})" if allowed else "FALSE")

    for column, values in (("effective_restriction", query.restrictions), ("purpose_key", query.purposes)):
        if values is not None:
            marks = ", ".join("?" for _ in values)
            conditions.append(f"{dialect.unindexed('e.' + column)} IN ({marks})" if values else "FALSE")
            params += sorted(values)
    if query.incident_id is not None:
        conditions.append("e.incident_id = ?")
        params.append(query.incident_id)
    for kind, value in (("alternative", query.alternative_id), ("related", query.related_id)):
        if value is not None:
            conditions.append("e.id IN (SELECT entry_id FROM entry_ids WHERE kind = ? AND value = ?)")
            params += [kind, value]
    for span in query.times:
        if span.start is not None:
            conditions.append(f"e.{span.field} >= ?")
            params.append(to_text(span.start))
        if span.end is not None:
            conditions.append(f"e.{span.field} <= ?")
            params.append(to_text(span.end))
    if query.indicator is not None:
        match, values = query.indicator.condition(dialect)
        conditions.append(match)
        params += values
    if query.text is not None:
        match, words = fulltext.condition(dialect, _WORD.findall(query.text))
        conditions.append(match)
        params += words
    return " AND ".join(conditions), params


def _source_and_order(dialect: Dialect, query: SearchQuery, *, counting: bool = False) -> tuple[str, str]:
    if query.text is not None:
        return fulltext.source(dialect, ACCESS_INDEX, counting=counting)
    if query.times:
        return "entries AS e", f"e.{query.times[0].field} DESC, e.id DESC"
    return "entries AS e", "e.id DESC"


def search(conn: Connection, query: SearchQuery, readable: Readable, *, limit: int,
           offset: int = 0) -> list[Entry]:
    """Matching live entries (documents not loaded): newest entry first, or newest first by the first
    time searched for."""
    where, params = _where(conn.dialect, query, readable)
    source, order = _source_and_order(conn.dialect, query)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM {source} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [from_row(row) for row in rows]


def heads(conn: Connection, readable: Readable, *, limit: int) -> list[Head]:
    """The newest ``limit`` live entries ``readable`` shows, as heads: what ``search`` finds with no
    criteria, in its order, and only the columns a head holds."""
    where, params = _where(conn.dialect, SearchQuery(), readable)
    rows = conn.execute(
        "SELECT e.id, e.id_name, e.incident_id, e.title, e.purpose, e.effective_restriction,"
        f" coalesce(e.published_at, e.received_at), e.updated_at FROM entries AS e WHERE {where}"
        " ORDER BY e.id DESC LIMIT ?", [*params, limit]).fetchall()
    return [Head(row[0], row[1], row[2], row[3], row[4], row[5], parse_time(row[6]), parse_time(row[7]))
            for row in rows]


def count(conn: Connection, query: SearchQuery, readable: Readable, *, cap: int) -> int:
    """How many entries match, counting at most ``cap + 1`` (so that huge results stay cheap)."""
    where, params = _where(conn.dialect, query, readable)
    source, _ = _source_and_order(conn.dialect, query, counting=True)
    return conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {where} LIMIT ?) AS matches",
        [*params, cap + 1]
    ).fetchone()[0]
