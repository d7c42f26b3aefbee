"""Incident <-> flat columns. Entries keep one column per field; the outbox keeps the same dict as JSON.

A new Incident field needs a column here and a schema step in ``store.migrations`` that adds it to
``entries`` (``db._SCHEMA`` is the version 1 schema); tests/test_store.py checks coverage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from xmppbridge.iodef.markings import canonical_restriction, is_wider
from xmppbridge.iodef.model import Incident
from xmppbridge.store.db import from_text, to_text

TIME_FIELDS = ("report_time", "generation_time", "detect_time", "start_time", "end_time")
ID_LIST_FIELDS = ("alternative_ids", "related_ids")

# Column name -> Incident attribute. ``incident_id`` because ``id`` is the row id.
COLUMNS = {
    "id_name": "id_name",
    "incident_id": "id",
    "instance": "instance",
    "restriction_raw": "restriction_raw",
    "restriction": "restriction",
    "purpose": "purpose",
    **{name: name for name in TIME_FIELDS},
    "title": "title",
    **{name: name for name in ID_LIST_FIELDS},
    "narrowest_restriction": "narrowest_restriction",
}


def audience(incident: Incident) -> str:
    """The collection an entry is filed in: the narrower of ``restriction`` and ``narrowest_restriction``.

    Unlike ``Incident.effective_restriction`` this does not trust ``narrowest_restriction`` to be at
    least as narrow as ``restriction`` (an Incident rebuilt with a narrower restriction keeps the old
    value); unknown values count as private (``policy.canonical_restriction``).
    """
    marked = canonical_restriction(incident.restriction)
    inner = canonical_restriction(incident.narrowest_restriction or marked)
    return inner if is_wider(marked, inner) else marked


def to_columns(incident: Incident) -> dict[str, Any]:
    """Column name -> SQLite value: times as fixed-width UTC text, id pairs as JSON."""
    columns: dict[str, Any] = {}
    for column, attr in COLUMNS.items():
        value = getattr(incident, attr)
        if attr in TIME_FIELDS:
            value = to_text(value)
        elif attr in ID_LIST_FIELDS:
            value = json.dumps([list(pair) for pair in value])
        columns[column] = value
    return columns


def from_columns(row: Mapping[str, Any]) -> Incident:
    values: dict[str, Any] = {}
    for column, attr in COLUMNS.items():
        value = row[column]
        if attr in TIME_FIELDS:
            value = from_text(value)
        elif attr in ID_LIST_FIELDS:
            value = tuple((str(name), str(ident)) for name, ident in json.loads(value))
        values[attr] = value
    return Incident(**values)


def to_json(incident: Incident) -> str:
    return json.dumps(to_columns(incident), sort_keys=True)


def from_json(text: str) -> Incident:
    return from_columns(json.loads(text))
