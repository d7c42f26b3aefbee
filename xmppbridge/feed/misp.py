"""A MISP feed of entries: ``manifest.json``, one ``{uuid}.json`` event per incident and ``hashes.csv``,
in the layout MISP pulls when an instance adds the URL as a feed of the "MISP Feed" format (the layout
PyMISP's ``feed_meta_generator`` writes: the manifest maps each event's UUID to its summary, and each
line of hashes.csv is the MD5 of an attribute value and the event's UUID).

One event per entry's Incident:

- its UUID is the incident's derived one (``iodef.uuids``), the same as the STIX ``incident`` id and the
  same in every version and every member's feed, so a MISP instance that pulls from several members
  keeps one event and updates it; ``timestamp`` is the entry's last change, so MISP sees the update;
- ``info`` is the title, ``date`` the first version's ReportTime/GenerationTime, ``Orgc`` the reporting
  CSIRT (the IncidentID ``name``, with its derived UUID);
- the restriction becomes a ``tlp`` taxonomy tag (the TLP 2.0 mapping of ``feed/stix.py``: public
  clear, partner green, need-to-know amber+strict, private and default red) and the MISP
  distribution: public "all communities" (3), partner "this community only" (1), the others "your
  organisation only" (0), on the event and on every attribute;
- purpose and IncidentID become tags too (``iodef:purpose="..."``, ``iodef:incident-id="name:id"``);
- each indicator (``iodef.indicators``) becomes an attribute: addresses ``ip-src``/``ip-dst`` by the
  System's role, ``domain``, ``url``, ``email-src``/``email-dst``, the hash's algorithm, ``port``,
  ``mac-address``, ``AS``; ``to_ids`` unless it is the victim's (a ``target`` or ``sensor`` System).

Which events a reader gets is the caller's decision, made with the reader's rights like every feed
view; this module only renders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from xmppbridge.iodef.indicators import Indicator
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.iodef.uuids import derived, incident_uuid, member_uuid
from xmppbridge.store.entries import Entry, Head

MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
TLP_OF_RESTRICTION = {"public": "clear", "partner": "green", "need-to-know": "amber+strict",
                      "private": "red", "default": "red"}
_TLP_COLOURS = {"clear": "#ffffff", "green": "#33ff00", "amber+strict": "#ffc000", "red": "#ff2b2b"}
DISTRIBUTION = {"public": 3, "partner": 1}  # others: 0, your organisation only
_VICTIM = {"target", "sensor"}
_HASHES = {"md5", "sha1", "sha224", "sha256", "sha384", "sha512"}  # MISP attribute types of the same name


def event_uuid(item: Entry | Head) -> str:
    head = item.head() if isinstance(item, Entry) else item
    return str(incident_uuid(head.id_name, head.incident_id))


def event(entry: Entry) -> dict[str, Any]:
    """The ``{"Event": ...}`` document of an entry (with its document loaded)."""
    stamp = str(int(entry.updated_at.timestamp()))
    distribution = str(DISTRIBUTION.get(entry.restriction, 0))
    uuid = event_uuid(entry)
    attributes = [_attribute(uuid, indicator, stamp, distribution) for indicator in entry.indicator_list()]
    summary = _summary(entry.head())
    return {"Event": {
        **summary,
        **{key: str(summary[key]) for key in ("timestamp", "analysis", "threat_level_id")},
        "uuid": uuid,
        "published": True,
        "publish_timestamp": stamp,
        "distribution": distribution,
        "extends_uuid": "",
        "Attribute": [a for a in attributes if a is not None],
    }}


def manifest(events: Mapping[str, Head]) -> bytes:
    """``manifest.json``: every event's UUID and summary (``events``: by UUID, as ``window`` gives them)."""
    return _json({uuid: _summary(head) for uuid, head in events.items()})


def hashes_csv(events: Mapping[str, Iterable[Indicator]]) -> bytes:
    """``hashes.csv``: the MD5 of each attribute value (as MISP hashes it, UTF-8) and the event UUID, from
    each event's indicators as the store keeps them beside the entry (``store.indicatorindex``: what
    ``iodef.indicators`` extracted from its current document, the same the event's attributes are made
    of), so that no document is parsed and every line matches an attribute. Each line once per event:
    MISP keeps these hashes in sets (``misp:feed_cache:<feed id>``, Redis SADD/SISMEMBER in its
    Feed.php), so a value an event names in two roles adds nothing by a second line."""
    lines: dict[str, None] = {}
    for uuid, rows in events.items():
        for indicator in rows:
            if (pair := _type_and_category(indicator)) is not None:
                hashed = _value(indicator, pair[0])
                lines[f"{hashlib.md5(hashed.encode(), usedforsecurity=False).hexdigest()},{uuid}\n"] = None
    return "".join(lines).encode()


def event_json(entry: Entry) -> bytes:
    return _json(event(entry))


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _summary(head: Head) -> dict[str, Any]:
    """What the manifest holds of an event, and the event repeats (with its numbers as text there, as
    MISP writes events; PyMISP's manifest keeps them numbers)."""
    return {
        "info": head.title or f"Incident {head.incident_id} ({head.id_name})",
        "date": head.stated.date().isoformat(),
        "timestamp": int(head.updated_at.timestamp()),
        "analysis": 1,  # ongoing: a report the originator may still revise
        "threat_level_id": 4,  # undefined: IODEF has no such scale
        "Orgc": {"name": head.id_name, "uuid": str(member_uuid(head.id_name))},
        "Tag": _tags(head),
    }


def _tags(head: Head) -> list[dict[str, Any]]:
    tlp = TLP_OF_RESTRICTION.get(head.restriction, "red")
    return [
        {"name": f"tlp:{tlp}", "colour": _TLP_COLOURS[tlp], "local": False, "relationship_type": ""},
        {"name": f'iodef:purpose="{canonical_purpose(head.purpose)}"', "colour": "#0088cc",
         "local": False, "relationship_type": ""},
        {"name": f'iodef:incident-id="{head.id_name}:{head.incident_id}"', "colour": "#0088cc",
         "local": False, "relationship_type": ""},
    ]


def _attribute(event: str, indicator: Indicator, stamp: str, distribution: str) -> dict[str, Any] | None:
    pair = _type_and_category(indicator)
    if pair is None:
        return None
    kind, category = pair
    value = _value(indicator, kind)
    expected = f"; expected action: {indicator.expectation}" if indicator.expectation else ""
    return {
        "uuid": str(derived("misp-attribute", event, kind, value)),
        "type": kind,
        "category": category,
        "value": value,
        "to_ids": indicator.role not in _VICTIM,
        "timestamp": stamp,
        "distribution": distribution,
        "comment": f"IODEF role: {indicator.role}{expected}",
        "disable_correlation": False,
    }


def _type_and_category(indicator: Indicator) -> tuple[str, str] | None:
    """The MISP attribute type and category of an indicator (MISP's describeTypes), or None."""
    source = indicator.role not in _VICTIM
    match indicator.kind:
        case "ipv4-addr" | "ipv4-net" | "ipv6-addr" | "ipv6-net":
            return ("ip-src" if indicator.role == "source" else "ip-dst"), "Network activity"
        case "domain":
            return "domain", "Network activity"
        case "url":
            return "url", "Network activity"
        case "email":
            return ("email-src" if source else "email-dst"), "Payload delivery"
        case "hash" if indicator.algorithm in _HASHES:
            return indicator.algorithm, "Payload delivery"
        case "port":
            return "port", "Network activity"
        case "mac":
            return "mac-address", "Network activity"
        case "asn":
            return "AS", "Network activity"
    return None


def _value(indicator: Indicator, kind: str) -> str:
    if kind == "port":
        return indicator.value.split("/", 1)[0]  # "443/tcp": MISP's port is the number
    if kind == "AS":
        return indicator.value.upper().removeprefix("AS")
    return indicator.value


def window(heads: Iterable[Head]) -> dict[str, Head]:
    """The events of ``heads`` (live entries): one per incident (the newest, if several bridges' copies
    were mirrored), by event UUID, newest first."""
    events: dict[str, Head] = {}
    for head in sorted(heads, key=lambda h: h.updated_at, reverse=True):
        events.setdefault(event_uuid(head), head)
    return events
