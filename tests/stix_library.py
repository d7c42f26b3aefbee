"""The STIX 2.1 bundles of entries built with the ``stix2`` library (the objects the tools' own library
makes, validated as it makes them): the reference that ``feed/stix.py``'s plain JSON must equal.

The mapping's decisions (which indicator gives which object, its pattern, ids, references) are the
core's; only the building of the objects is the library's, so what is compared is the rendering.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import stix2

from xmppbridge.errors import InputRejected
from xmppbridge.feed import stix
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef import stixids
from xmppbridge.iodef.indicators import of_document
from xmppbridge.store.entries import Entry

_OBSERVABLES = {"ipv4-addr": stix2.IPv4Address, "ipv6-addr": stix2.IPv6Address,
                "autonomous-system": stix2.AutonomousSystem, "file": stix2.File,
                "domain-name": stix2.DomainName, "url": stix2.URL, "email-addr": stix2.EmailAddress,
                "mac-addr": stix2.MACAddress}


def marking(level: str) -> stix2.MarkingDefinition:
    return stix2.MarkingDefinition(
        id=stix.marking_id(level), created=stix.MARKING_CREATED, name=f"TLP:{level.upper()}",
        extensions={stix.TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    )


def bundle(entries: Iterable[Entry], urls: FeedUrls) -> bytes:
    objects: dict[str, Any] = {}
    versions: list[str] = []
    for entry in entries:
        versions.append(f"{entry.id}.{entry.revision}")
        for obj in _objects(entry, urls):
            objects.setdefault(obj.id, obj)
    result = stix2.Bundle(objects=list(objects.values()), id=stixids.stix_id("bundle", *versions),
                          allow_custom=False)
    return json.dumps(json.loads(result.serialize()), separators=(",", ":"), sort_keys=True).encode()


def _objects(entry: Entry, urls: FeedUrls) -> Iterator[Any]:
    incident = entry.incident
    tlp = marking(stix.TLP_OF_RESTRICTION.get(entry.restriction, "red"))
    modified = entry.updated_at
    created = min(entry.published_at or entry.received_at, modified)
    identity = stix2.Identity(id=stixids.stix_id("identity", incident.id_name), name=incident.id_name,
                              identity_class="organization", created=stix.IDENTITY_CREATED,
                              modified=stix.IDENTITY_CREATED, object_marking_refs=[tlp.id])
    common = {"created_by_ref": identity.id, "object_marking_refs": [tlp.id], "created": created,
              "modified": modified}
    report = stix2.Incident(id=stixids.stix_id("incident", incident.id_name, incident.id),
                            name=incident.title or f"Incident {incident.id} ({incident.id_name})",
                            external_references=stix.references(entry, urls), **common)
    yield from (tlp, identity, report)
    try:
        found = of_document(entry.xml)
    except InputRejected:
        return
    for indicator in found:
        mapped = stixids.observable_of(indicator)
        if mapped is None:
            continue
        kind, properties = mapped
        observable = _OBSERVABLES[kind](**properties, object_marking_refs=[tlp.id])
        yield observable
        yield _related(observable.id, report.id, common)
        if indicator.role not in ("target", "sensor"):
            detection = stix2.Indicator(
                id=stixids.stix_id("indicator", incident.id_name, incident.id, indicator.kind,
                                   indicator.value),
                name=f"{indicator.kind} {indicator.value}", pattern=stix.pattern(indicator),
                pattern_type="stix", valid_from=created, description=stix.described(indicator), **common)
            yield detection
            yield _related(detection.id, report.id, common)


def _related(source: str, target: str, common: dict[str, Any]) -> stix2.Relationship:
    return stix2.Relationship(id=stixids.stix_id("relationship", source, "related-to", target),
                              source_ref=source, relationship_type="related-to", target_ref=target, **common)
