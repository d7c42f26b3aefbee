"""TAXII 2.1 (OASIS TAXII 2.1, CS01), read-only, over the mirror: what MISP's and OpenCTI's TAXII
connectors (taxii2-client) pull.

- ``/taxii2/`` is the discovery document (§4.1), naming one API root, ``/taxii2/api/`` (§4.2).
- One collection per restriction the reader may read (§5.1, §5.2), with a UUID derived from the
  restriction, so it is the same on every member's bridge; ``can_write`` is false for all.
- A collection's objects (§5.3) are the STIX 2.1 objects of its live entries (``feed/stix.py``), oldest
  change first, the objects of one entry in their bundle's order. ``date_added`` of an object is the
  time its entry last changed in the collection, so a new version of an incident is added again.
  ``added_after`` and ``limit`` page them, with ``next`` for the following page (§3.4) and the
  ``X-TAXII-Date-Added-First``/``-Last`` headers (§3.4.2). An object that several entries share (their
  member's identity, the TLP marking) comes once per page.
- The manifest (§5.4) lists the same objects' ids, dates and versions, paged alike.
- An object by id (§5.5) is found for incidents (by their derived UUID, ``iodef.uuids``); the versions
  endpoint (§5.6) and ``match[...]`` filters are not offered, and writing (§5.4 Add Objects) neither.

This module renders and decides the paging; the HTTP shell (``feed/taxiiroutes.py``) reads the store
with the reader's rights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from xmppbridge.feed import stix
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.uuids import derived
from xmppbridge.store.entries import Entry

MEDIA_TYPE = "application/taxii+json;version=2.1"
ROOT = "taxii2/"
API = ROOT + "api/"  # FeedUrls.taxii_api_root
MAX_LIMIT = 1000  # objects per page at most, whatever the client asks
DEFAULT_LIMIT = 100


def collection_id(restriction: str) -> str:
    return str(derived("taxii-collection", restriction))


def discovery(urls: FeedUrls, title: str) -> dict[str, Any]:
    return {"title": title, "default": urls.taxii_api_root(), "api_roots": [urls.taxii_api_root()],
            "description": "IODEF incident reports mirrored over XMPP, as STIX 2.1 objects. Read-only: "
                           "no collection can be written to. One collection per restriction you may read."}


def api_root(title: str) -> dict[str, Any]:
    return {"title": title, "versions": [MEDIA_TYPE], "max_content_length": 0,
            "description": "Read-only API root of the incident mirror"}


def collection(restriction: str) -> dict[str, Any]:
    return {"id": collection_id(restriction), "title": f"Incidents ({restriction})",
            "description": f"Every live incident of restriction {restriction}, as STIX 2.1",
            "can_read": True, "can_write": False, "media_types": [stix.MEDIA_TYPE]}


def error(status: int, title: str) -> str:
    """A TAXII error message (§3.6.1)."""
    return json.dumps({"title": title, "http_status": str(status)})


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after change ``seq`` of the collection, and within the entry of change
    ``seq + 1``, after its first ``skip`` objects. The ``next`` value a client sends back is its text."""

    seq: int = 0
    skip: int = 0

    @classmethod
    def parse(cls, text: str) -> Cursor:
        seq, _, skip = text.partition(".")
        if not (seq.isdigit() and skip.isdigit()) or len(text) > 40:
            raise ValueError(f"next must be a value from an earlier page, not {text!r}")
        return cls(int(seq), int(skip))

    def __str__(self) -> str:
        return f"{self.seq}.{self.skip}"


@dataclass(frozen=True)
class Change:
    """An entry as the collection holds it: its change number and when it was added."""

    seq: int
    entry: Entry


@dataclass(frozen=True)
class Page:
    objects: list[dict[str, Any]]
    added: list[datetime]  # date_added of each object
    more: bool
    next: Cursor | None


def page(changes: Sequence[Change], cursor: Cursor, limit: int, urls: FeedUrls, *, exhausted: bool,
         last_seq: int) -> Page:
    """The next ``limit`` objects after ``cursor`` among ``changes`` (the live ones of the changes after
    ``cursor.seq`` up to ``last_seq``, oldest first). ``exhausted``: the collection has nothing after
    ``last_seq``."""
    objects: list[dict[str, Any]] = []
    added: list[datetime] = []
    seen: set[str] = set()
    for change in changes:
        skip = cursor.skip if change.seq == cursor.seq + 1 else 0
        objects_of_entry = stix.objects_of(change.entry, urls)
        for index, obj in enumerate(objects_of_entry[skip:], start=skip):
            if len(objects) == limit:
                return Page(objects, added, True, Cursor(change.seq - 1, index))
            if obj["id"] in seen:
                continue
            seen.add(obj["id"])
            objects.append(obj)
            added.append(change.entry.updated_at)
    return Page(objects, added, not exhausted, None if exhausted else Cursor(last_seq, 0))


def envelope(result: Page) -> dict[str, Any]:
    """The objects of a page (§3.7, the envelope)."""
    return _paged(result, result.objects)


def manifest(result: Page) -> dict[str, Any]:
    """The manifest records of a page's objects (§5.4)."""
    records = [{"id": obj["id"], "date_added": timestamp(when),
                "version": obj.get("modified", obj.get("created", timestamp(when))),
                "media_type": stix.MEDIA_TYPE}
               for obj, when in zip(result.objects, result.added, strict=True)]
    return _paged(result, records)


def _paged(result: Page, items: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {"more": result.more}
    if result.next is not None and result.more:
        body["next"] = str(result.next)
    if items:
        body["objects"] = items
    return body


def timestamp(moment: datetime) -> str:
    """TAXII's timestamps (§3.1: RFC 3339, UTC, "Z"), to the microsecond as the store keeps them."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def date_headers(result: Page) -> dict[str, str]:
    if not result.added:
        return {}
    return {"X-TAXII-Date-Added-First": timestamp(min(result.added)),
            "X-TAXII-Date-Added-Last": timestamp(max(result.added))}

