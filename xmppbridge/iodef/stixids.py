"""The ids of the STIX 2.1 objects an incident's bundle holds (``feed.stix`` renders the objects), here
so that the store can index them (``store.objectindex``, TAXII's object by id) with no bundle rendered.

- Domain and relationship objects: derived from what they stand for (``iodef.uuids``), so the same
  incident, member or indicator has the same id in every bridge's bundles and across versions.
- Cyber-observable objects: STIX 2.1 §2.9's deterministic UUIDv5, under its namespace, of the object's
  ID contributing properties in JSON canonical form (RFC 8785), as the ``stix2`` library derives them.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any
from urllib.parse import urlsplit

from xmppbridge.iodef.indicators import Indicator
from xmppbridge.iodef.uuids import derived_text, uuid5_text

HASHES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}  # hash-algorithm-ov
NOT_INDICATORS = frozenset({"target", "sensor"})  # a victim's address is an observable, not a detection
_SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")


def stix_id(kind: str, *parts: str) -> str:
    """The id of a domain or relationship object (or a bundle), derived from what it stands for."""
    return f"{kind}--{derived_text(kind, *parts)}"


def identity_id(id_name: str) -> str:
    return stix_id("identity", id_name)


def incident_id(id_name: str, incident: str) -> str:
    return stix_id("incident", id_name, incident)


def related_id(source: str, target: str) -> str:
    return stix_id("relationship", source, "related-to", target)


@dataclass(frozen=True)
class Observed:
    """One indicator as its bundle holds it: the cyber-observable (type, ID contributing properties,
    id), and the ``indicator`` SDO's id when it is a detection (None: the victim's side)."""

    indicator: Indicator
    kind: str
    properties: dict[str, Any]
    id: str
    detection: str | None


def observed(id_name: str, incident: str, indicators: Iterable[Indicator]) -> Iterator[Observed]:
    """The indicators of an incident that STIX has an object for, in their order."""
    for indicator in indicators:
        found = observable_of(indicator)
        if found is None:
            continue
        kind, properties = found
        detection = (None if indicator.role in NOT_INDICATORS else
                     stix_id("indicator", id_name, incident, indicator.kind, indicator.value))
        sco = f"{kind}--{uuid5_text(_SCO_NAMESPACE, _canonical(properties))}"
        yield Observed(indicator, kind, properties, sco, detection)


def _canonical(properties: dict[str, Any]) -> str:
    """JSON canonical form (RFC 8785) of an object's ID contributing properties: every object here has
    one (a file: one hash), whose value is a string or a whole number. ``json.dumps`` writes the same
    (its string escapes are RFC 8785's), but at several times the cost, and a STIX page makes 500."""
    [(name, value)] = properties.items()
    if isinstance(value, dict):
        return f'{{"{name}":{_canonical(value)}}}'
    return f'{{"{name}":{encode_basestring(value) if isinstance(value, str) else int(value)}}}'


def held_ids(id_name: str, incident: str, indicators: Iterable[Indicator]) -> set[str]:
    """The ids of the objects the bundle holds for an incident's indicators: observables, detections and
    their relationships to the incident (its marking, identity and incident are named by their own)."""
    report = incident_id(id_name, incident)
    ids: set[str] = set()
    for each in observed(id_name, incident, indicators):
        ids |= {each.id, related_id(each.id, report)}
        if each.detection is not None:
            ids |= {each.detection, related_id(each.detection, report)}
    return ids


def observable_of(indicator: Indicator) -> tuple[str, dict[str, Any]] | None:
    """The cyber-observable object type and ID contributing properties (§6) for an indicator, or None for
    what STIX has no object for here and for a value its object may not hold (a peer wrote it; the CSV
    and the HTML still show it)."""
    value = indicator.value
    if not well_formed(indicator):
        return None
    if indicator.kind in ("ipv4-addr", "ipv4-net", "ipv6-addr", "ipv6-net"):
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return None
        return ("ipv4-addr" if network.version == 4 else "ipv6-addr"), {"value": value}
    if indicator.kind == "asn":
        number = value.upper().removeprefix("AS")
        return ("autonomous-system", {"number": int(number)}) if number.isdigit() else None
    if indicator.kind == "hash":
        name = HASHES.get(indicator.algorithm)
        return ("file", {"hashes": {name: value}}) if name else None
    kinds = {"domain": "domain-name", "url": "url", "email": "email-addr", "mac": "mac-addr"}
    return (kinds[indicator.kind], {"value": value}) if indicator.kind in kinds else None


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")  # STIX 2.1 §6.9: lower case, colon-delimited
_NOT_IN_URLS = set('"<>\\^`{|}')
_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


def _hostname(value: str) -> bool:
    """A host name (RFC 1123 §2.1), internationalised ones by their IDNA form."""
    if value.isascii():  # what IDNA would check of it (labels of 1 to 63), the pattern checks too
        ascii_form = value.lower()
    else:
        try:
            ascii_form = value.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return False
    return 0 < len(ascii_form) <= 253 and all(_LABEL.fullmatch(label) for label in ascii_form.split("."))


def well_formed(indicator: Indicator) -> bool:
    """What the STIX 2.1 object's value must be (§6), as stix2-validator checks it."""
    value = indicator.value
    if indicator.kind == "domain":
        return _hostname(value)
    if indicator.kind == "email":
        local, at, domain = value.rpartition("@")
        return bool(at and local) and not any(c.isspace() for c in local) and _hostname(domain)
    if indicator.kind == "url":
        parts = urlsplit(value)  # an absolute URL, without what RFC 3986 §2 never allows in one
        return bool(parts.scheme and parts.netloc) and not any(c.isspace() or c in _NOT_IN_URLS
                                                               for c in value)
    if indicator.kind == "mac":
        return bool(_MAC.fullmatch(value))
    if indicator.kind == "hash":
        return len(value) == _HASH_LENGTHS.get(indicator.algorithm, -1)
    return True
