"""STIX 2.1 bundles of entries (OASIS STIX 2.1, CS03), as the ``stix2`` library builds them.

There is no published IODEF-to-STIX 2.1 mapping to follow, so this one keeps to what both standards say
and what MISP and OpenCTI read:

- Each entry's Incident becomes an ``incident`` SDO (STIX 2.1 §4.9), named after its title. Its
  IncidentID (RFC 7970 §3.4) and purpose (§3.2) become external references (§2.5), and so does the
  signed IODEF document on this feed.
- The reporting CSIRT, the IncidentID's ``name`` (an FQDN, RFC 7970 §3.4), becomes an ``identity``
  (§4.8, identity_class ``organization``): the ``created_by_ref`` of everything else.
- The indicators (``iodef.indicators``) become cyber-observable objects (STIX 2.1 §6): ipv4-addr,
  ipv6-addr, domain-name, url, email-addr, mac-addr, autonomous-system and file (by hash). Each is
  ``related-to`` the incident. Ports and protocols are left out: STIX carries them only inside a
  ``network-traffic`` object, which needs both ends of a flow, and IODEF often names only one.
- Observables that are not the victim's (any System role but ``target`` and ``sensor``) also get an
  ``indicator`` SDO (§4.7) with a STIX pattern, ``related-to`` the incident, for tools that load
  patterns as detections.
- The entry's restriction becomes the official TLP 2.0 marking definition (FIRST TLP 2.0, as the OASIS
  CTI TC publishes it in cti-stix-common-objects, extension-definition--60a3c5c5-...). The mapping
  follows RFC 7970 §3.3.1's TLP aliases: public is CLEAR, partner GREEN, private RED. ``need-to-know``
  is AMBER+STRICT, not AMBER: RFC 7970 narrowed it to the recipient's own organization, which is what
  AMBER+STRICT allows and AMBER does not. ``default`` (a policy agreed outside the document) is RED,
  the safe reading when the agreement is unknown to the tool. Every object but the marking definitions
  carries the marking.

Ids are derived from what the object stands for (``iodef.stixids``): the same incident, member or
indicator has the same id in every bridge's bundles and across versions, and a tool that loads bundles
from several members merges them instead of duplicating; a MISP event of the incident has its UUID. A
new version of an incident keeps its id and gets a later ``modified``. Cyber-observable ids are the
library's deterministic UUIDv5 ones (§2.9, from the SCO's id contributing properties). The store
indexes the same ids (``store.objectindex``) for TAXII's object by id.

The objects are written as plain JSON objects here, not built with the ``stix2`` library: the library
validates each object as it builds it (a pattern is parsed by its ANTLR grammar), which cost about 12 ms
per entry of ten indicators, so 600 ms for a page of 50. What it would build is the contract:
``tests/stix_library.py`` builds the same bundles with it, and the tests check that every document of
the tests and the samples gives JSON equal to it, which the OASIS ``stix2-validator`` accepts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef import stixids
from xmppbridge.iodef.indicators import Indicator
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.iodef.stixids import HASHES, stix_id
from xmppbridge.store.entries import Entry

MEDIA_TYPE = "application/stix+json;version=2.1"  # TAXII 2.1 §1.6.8.1
TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2 = {  # level -> the official marking definition's UUID
    "clear": "94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP_OF_RESTRICTION = {"public": "clear", "partner": "green", "need-to-know": "amber+strict",
                      "private": "red", "default": "red"}
# An identity stands for a member, not for one report: one fixed creation time, so that every bundle
# carries the very same object.
IDENTITY_CREATED = datetime(2016, 1, 1, tzinfo=UTC)
MARKING_CREATED = "2022-10-01T00:00:00.000Z"
_SPEC = "2.1"


def marking(level: str) -> dict[str, Any]:
    """The official TLP 2.0 marking definition for ``level`` (clear, green, amber, amber+strict, red)."""
    return {"type": "marking-definition", "spec_version": _SPEC, "id": marking_id(level),
            "created": MARKING_CREATED, "name": f"TLP:{level.upper()}",
            "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}}}


def marking_id(level: str) -> str:
    return f"marking-definition--{TLP2[level]}"


def bundle(entries: Iterable[Entry], urls: FeedUrls) -> bytes:
    """A bundle of every object of ``entries`` (each object once), as JSON. Its id is derived from the
    entries and their revisions, so the same entries give the same bytes (and ETag)."""
    objects: dict[str, dict[str, Any]] = {}
    versions: list[str] = []
    for entry in entries:
        versions.append(f"{entry.id}.{entry.revision}")
        for obj in objects_of(entry, urls):
            objects.setdefault(obj["id"], obj)
    result: dict[str, Any] = {"type": "bundle", "id": stix_id("bundle", *versions)}
    if objects:  # optional, and left out of an empty bundle (STIX 2.1 §8)
        result["objects"] = list(objects.values())
    return json.dumps(result, separators=(",", ":"), sort_keys=True).encode()


def objects_of(entry: Entry, urls: FeedUrls) -> list[dict[str, Any]]:
    """The objects of an entry's bundle, in its order (each once)."""
    unique: dict[str, dict[str, Any]] = {}
    for obj in _objects(entry, urls):
        unique.setdefault(obj["id"], obj)
    return list(unique.values())


def timestamp(moment: datetime, *, milliseconds: bool = True) -> str:
    """A STIX timestamp (§3.2, UTC, "Z") to the microsecond, without trailing zeros: at least to the
    millisecond for ``created`` and ``modified`` (§3.2 asks for it), as the library writes them."""
    zoned = moment.astimezone(UTC)
    fraction = f"{zoned.microsecond:06d}".rstrip("0")
    if milliseconds:
        fraction = fraction.ljust(3, "0")
    return zoned.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


_IDENTITY_STAMP = timestamp(IDENTITY_CREATED)


def _objects(entry: Entry, urls: FeedUrls) -> Iterator[dict[str, Any]]:
    incident = entry.incident
    level = TLP_OF_RESTRICTION.get(entry.restriction, "red")
    tlp = marking_id(level)
    # The first version's ReportTime/GenerationTime: the same in every bridge and in every version.
    created_at = min(entry.published_at or entry.received_at, entry.updated_at)
    created, modified = timestamp(created_at), timestamp(entry.updated_at)
    valid_from = timestamp(created_at, milliseconds=False)
    identity = {"type": "identity", "spec_version": _SPEC, "id": stixids.identity_id(incident.id_name),
                "created": _IDENTITY_STAMP, "modified": _IDENTITY_STAMP,
                "name": incident.id_name, "identity_class": "organization", "object_marking_refs": [tlp]}
    common = {"spec_version": _SPEC, "created_by_ref": identity["id"], "created": created,
              "modified": modified, "object_marking_refs": [tlp]}
    report = {"type": "incident", "id": stixids.incident_id(incident.id_name, incident.id),
              "name": incident.title or f"Incident {incident.id} ({incident.id_name})",
              "external_references": references(entry, urls), **common}
    yield from (marking(level), identity, report)
    for each in stixids.observed(incident.id_name, incident.id, entry.indicator_list()):
        yield {"type": each.kind, "spec_version": _SPEC, "id": each.id, **each.properties,
               "object_marking_refs": [tlp]}
        yield _related(each.id, report["id"], common)
        if each.detection is not None:
            indicator = each.indicator
            detection = {
                "type": "indicator", "id": each.detection,
                "name": f"{indicator.kind} {indicator.value}", "pattern": pattern(indicator),
                "pattern_type": "stix", "pattern_version": _SPEC,
                "valid_from": valid_from, "description": described(indicator),
                **common}
            yield detection
            yield _related(detection["id"], report["id"], common)


def references(entry: Entry, urls: FeedUrls) -> list[dict[str, Any]]:
    """The incident's external references: its IncidentID, purpose, and the signed document here."""
    incident = entry.incident
    return [
        {"source_name": incident.id_name, "external_id": incident.id, "description": "IODEF IncidentID"},
        {"source_name": "iodef-purpose", "external_id": canonical_purpose(incident.purpose),
         "description": "IODEF Incident purpose (RFC 7970 §3.2)"},
        {"source_name": "iodef", "url": urls.revision(entry.id, entry.revision),
         "hashes": {"SHA-256": hashlib.sha256(entry.xml).hexdigest()},
         "description": f"The signed IODEF {entry.version} document, revision {entry.revision}"},
    ]


def _related(source: str, target: str, common: dict[str, Any]) -> dict[str, Any]:
    return {"type": "relationship", "id": stixids.related_id(source, target),
            "relationship_type": "related-to", "source_ref": source, "target_ref": target, **common}


def described(indicator: Indicator) -> str:
    expected = f"; expected action: {indicator.expectation}" if indicator.expectation else ""
    return f"IODEF role: {indicator.role}{expected}"


def pattern(indicator: Indicator) -> str:
    """A STIX pattern (STIX 2.1 §9) matching the observable; string literals escape ``\\`` and ``'``."""
    literal = "'" + indicator.value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if indicator.kind == "hash":
        return f"[file:hashes.'{HASHES[indicator.algorithm]}' = {literal}]"
    if indicator.kind == "asn":
        return f"[autonomous-system:number = {int(indicator.value.upper().removeprefix('AS'))}]"
    path = {"ipv4-addr": "ipv4-addr:value", "ipv4-net": "ipv4-addr:value", "ipv6-addr": "ipv6-addr:value",
            "ipv6-net": "ipv6-addr:value", "domain": "domain-name:value", "url": "url:value",
            "email": "email-addr:value", "mac": "mac-addr:value"}[indicator.kind]
    if indicator.kind.endswith("-net"):
        return f"[{path} ISSUBSET {literal}]"  # any address inside the network (§9.5)
    return f"[{path} = {literal}]"
