"""Per-Incident facts the bridge routes and indexes on: IDs, restriction, purpose, times, title.

Reads the tree exactly as received. In particular restriction comes only from attributes actually
present: the 1.0 XSD declares defaults on child classes (IncidentID="public", EventData="default", ...)
which would break restriction inheritance if a validator had inserted them (RFC 5070 §3.2: a
restriction covers its class and the classes in it).
Elements are matched by namespace URI + local name, never by prefix.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from lxml import etree

from xmppbridge.errors import SchemaInvalid
from xmppbridge.iodef.markings import canonical_restriction, is_wider
from xmppbridge.iodef.model import NS_V1, NS_V2, Incident

NS_BY_VERSION = {"1.0": NS_V1, "2.0": NS_V2}
NS_SCI = "urn:ietf:params:xml:ns:iodef-sci-1.0"  # RFC 7203 elements carry IODEF restriction attributes too
TITLE_MAX = 200
DEFAULT_RESTRICTION = "private"  # Incident@restriction default in both schemas

# xs:dateTime, plus the liberties real producers take: any number of fractional digits, lowercase t/z,
# a space for T, "+0000" offsets. The schema rejects most of these anyway in strict mode.
_DATETIME = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:?\d{2})?"
)


def classify(root: etree._Element, version: str) -> list[Incident]:
    """One ``Incident`` per ``Incident`` child of ``root`` (an IODEF-Document of ``version``), in order.

    Raises ``SchemaInvalid`` when an Incident lacks what routing needs (IncidentID with name and text,
    purpose); that can only happen when schema errors were tolerated ("warn" mode).
    """
    if version not in NS_BY_VERSION:
        raise ValueError(f"unknown IODEF version {version!r}")
    ns = NS_BY_VERSION[version]
    shared = _root_markings(root, ns)
    incidents = [
        _classify_one(elem, ns, position, shared)
        for position, elem in enumerate(_children(root, ns, "Incident"), start=1)
    ]
    if not incidents:
        raise SchemaInvalid("the IODEF-Document contains no Incident", details=["no Incident element"])
    return incidents


def _classify_one(elem: etree._Element, ns: str, position: int, shared: list[str]) -> Incident:
    id_elem = _child(elem, ns, "IncidentID")
    id_name = id_elem.get("name", "").strip() if id_elem is not None else ""
    id_text = _text(id_elem)
    purpose = elem.get("purpose", "").strip()
    missing = [
        what
        for what, value in (
            ("IncidentID", id_elem is not None),
            ("IncidentID@name", id_name),
            ("IncidentID text", id_text),
            ("Incident@purpose", purpose),
        )
        if not value
    ]
    if missing:
        raise SchemaInvalid(
            f"Incident #{position} cannot be classified: missing {', '.join(missing)}",
            details=[f"Incident #{position}: missing {what}" for what in missing],
        )
    # NMTOKEN values may carry surrounding whitespace and still be schema-valid.
    restriction_raw = (elem.get("restriction") or "").strip() or DEFAULT_RESTRICTION
    restriction = canonical_restriction(restriction_raw, elem.get("ext-restriction"))
    return Incident(
        id_name=id_name,
        id=id_text,
        instance=id_elem.get("instance"),
        restriction_raw=restriction_raw,
        restriction=restriction,
        purpose=purpose,
        report_time=_time(_child(elem, ns, "ReportTime")),
        generation_time=_time(_child(elem, ns, "GenerationTime")),
        detect_time=_time(_child(elem, ns, "DetectTime")),
        start_time=_time(_child(elem, ns, "StartTime")),
        end_time=_time(_child(elem, ns, "EndTime")),
        title=_title(_child(elem, ns, "Description")),
        alternative_ids=_ids(elem, ns, "AlternativeID"),
        related_ids=_ids(elem, ns, "RelatedActivity"),
        narrowest_restriction=_narrowest([restriction, *_markings(elem, ns), *shared]),
    )


def parse_datetime(value: str | None) -> datetime | None:
    """An IODEF time as an aware UTC datetime; zone-less means UTC; None when absent or unparsable."""
    if not value:
        return None
    match = _DATETIME.fullmatch(value.strip())
    if match is None:
        return None
    parts = {key: int(match[key]) for key in ("year", "month", "day", "hour", "minute", "second")}
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    # xs:dateTime allows 24:00:00 for midnight at the end of the day; datetime does not.
    next_day = parts["hour"] == 24 and parts["minute"] == parts["second"] == micro == 0
    if next_day:
        parts["hour"] = 0
    try:
        moment = datetime(**parts, microsecond=micro, tzinfo=_zone(match["tz"]))
        if next_day:
            moment += timedelta(days=1)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # month 13, second 60, year 9999 + offset, ...
        return None


def _zone(tz: str | None) -> timezone:
    if tz is None or tz in ("Z", "z"):
        return UTC  # the schema does not require an offset; the bridge reads a missing one as UTC
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    if offset >= timedelta(hours=24):
        raise ValueError(f"offset {tz} out of range")
    return timezone(sign * offset)


def _time(elem: etree._Element | None) -> datetime | None:
    return parse_datetime(_text(elem)) if elem is not None else None


def _title(elem: etree._Element | None) -> str:
    title = " ".join(_text(elem).split())
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1].rstrip() + "…"


def _ids(incident: etree._Element, ns: str, container: str) -> tuple[tuple[str, str], ...]:
    """(name, id) of the IncidentIDs inside each ``container`` child of the Incident, in document order."""
    return tuple(
        (id_elem.get("name", "").strip(), _text(id_elem))
        for holder in _children(incident, ns, container)
        for id_elem in _children(holder, ns, "IncidentID")
    )


def _root_markings(root: etree._Element, ns: str) -> list[str]:
    """Restrictions on root-level AdditionalData (2.0), which travel with every Incident of the document."""
    return [marking for extra in _children(root, ns, "AdditionalData") for marking in _markings(extra, ns)]


def _markings(elem: etree._Element, ns: str) -> list[str]:
    """Canonical restrictions written on ``elem``'s descendants (and itself), IODEF/SCI elements only.

    Attributes in foreign XML under AdditionalData are someone else's vocabulary and are skipped.
    """
    own = {ns, NS_SCI}
    return [
        canonical_restriction(node.get("restriction", "").strip(), node.get("ext-restriction"))
        for node in elem.iter(etree.Element)
        if node.get("restriction") is not None and etree.QName(node).namespace in own
    ]


def _narrowest(restrictions: list[str]) -> str:
    narrowest = restrictions[0]
    for candidate in restrictions[1:]:
        if is_wider(narrowest, candidate):
            narrowest = candidate
    return narrowest


def _children(parent: etree._Element, ns: str, name: str) -> list[etree._Element]:
    return list(parent.iterchildren(f"{{{ns}}}{name}"))


def _child(parent: etree._Element, ns: str, name: str) -> etree._Element | None:
    return next(parent.iterchildren(f"{{{ns}}}{name}"), None)


def _text(elem: etree._Element | None) -> str:
    """All text inside ``elem`` (comments and PIs excluded), stripped."""
    if elem is None:
        return ""
    return str(elem.xpath("string()")).strip()
