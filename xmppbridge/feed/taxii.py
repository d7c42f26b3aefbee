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
- ``match[id]``, ``match[type]``, ``match[version]`` and ``match[spec_version]`` filter objects and
  the manifest (§3.5, ``feed/taxiimatch.py``). ``match[version]=all``/``first``/a timestamp reach the
  earlier versions of each entry (the store keeps every signed version), each added when it was stored.
- An object by id (§5.5, with ``match[version]``, ``match[spec_version]`` and paging) and its versions
  (§5.6), for every kind of object, come from the newest live entry of the collection holding it that
  the reader may read: incidents by their derived UUID (``iodef.uuids``), the TLP marking from any entry,
  the rest through the object index (``store.objectindex``). Writing (§5.4 Add Objects, §5.7 Delete) is
  not offered.

This module renders and decides the paging; the HTTP shell (``feed/taxiiroutes.py``) reads the store
with the reader's rights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from xmppbridge.feed import stix
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.feed.taxiimatch import Match, chosen, version_of
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
    """An entry as the collection holds it: its change number and when it was added; ``history`` its
    earlier versions, oldest first, with their documents (read only when a filter asks for them)."""

    seq: int
    entry: Entry
    history: Sequence[Entry] = ()


@dataclass(frozen=True)
class Page:
    objects: list[dict[str, Any]]
    added: list[datetime]  # date_added of each object
    more: bool
    next: Cursor | None


def object_versions(change: Change, urls: FeedUrls, match: Match) -> list[tuple[dict[str, Any], datetime]]:
    """The objects of a change with when each was added, oldest first, in the versions ``match`` asks
    for: the entry's current bundle alone for the latest, else the versions of the entry's objects that
    ``match[version]`` selects among all its versions. Each object version is added when the newest of
    the entry's versions holding it was stored, so what they all share (the member's identity, the
    marking) is added with the entry's last change, as when only the latest is asked for."""
    if match.latest_only:
        return [(obj, change.entry.updated_at) for obj in stix.objects_of(change.entry, urls)]
    held: dict[str, dict[str, tuple[int, dict[str, Any], datetime]]] = {}  # id -> version -> latest
    order = 0
    for entry in [*change.history, change.entry]:
        for obj in stix.objects_of(entry, urls):
            # an unversioned object (an SCO, its id derived from its content) has one version
            key = version_of(obj, "") if ("modified" in obj or "created" in obj) else ""
            held.setdefault(obj["id"], {})[key] = (order, obj, entry.updated_at)
            order += 1
    found = []
    for versions in held.values():
        stamps = {version_of(obj, timestamp(added)): key for key, (_, obj, added) in versions.items()}
        found += [versions[stamps[v]] for v in chosen(list(stamps), match.versions)]
    return [(obj, added) for _, obj, added in sorted(found, key=lambda each: each[0])]


class Pager:
    """Fills a page of at most ``limit`` objects after ``cursor`` from changes given oldest first. The
    cursor counts positions in ``object_versions``, so a client must send the same filters with
    ``next``, as taxii2-client's ``as_pages`` does. An object that several entries share (their member's
    identity, the TLP marking) comes once per page."""

    def __init__(self, cursor: Cursor, limit: int, urls: FeedUrls, match: Match) -> None:
        self.cursor, self.limit, self.urls, self.match = cursor, limit, urls, match
        self.objects: list[dict[str, Any]] = []
        self.added: list[datetime] = []
        self.seen: set[tuple[str, str]] = set()
        self.stop: Cursor | None = None

    def add(self, change: Change) -> bool:
        """Take a change's objects; True once the page is full (then give it no more)."""
        skip = self.cursor.skip if change.seq == self.cursor.seq + 1 else 0
        objects = object_versions(change, self.urls, self.match)
        for index, (obj, added) in enumerate(objects[skip:], start=skip):
            key = (obj["id"], version_of(obj, timestamp(added)))
            if not self.match.selects(obj) or key in self.seen:
                continue
            if len(self.objects) == self.limit:
                self.stop = Cursor(change.seq - 1, index)
                return True
            self.seen.add(key)
            self.objects.append(obj)
            self.added.append(added)
        return False

    def page(self, *, exhausted: bool, last_seq: int) -> Page:
        """The page: ``more`` with a ``next`` where it stopped if it is full and more objects follow, or
        after ``last_seq`` (the last change given) unless ``exhausted`` (the collection has no more)."""
        if self.stop is not None:
            return Page(self.objects, self.added, True, self.stop)
        return Page(self.objects, self.added, not exhausted, None if exhausted else Cursor(last_seq, 0))


def versions(changes: Sequence[Change], object_id: str, urls: FeedUrls,
             match: Match) -> list[tuple[str, datetime]]:
    """The versions of an object among ``changes`` (the entries holding it), with when each was added,
    oldest first (§5.6): ``match[spec_version]`` applies, ``match[version]`` does not."""
    every = replace(match, ids=frozenset([object_id]), versions=("all",))
    found = {version_of(obj, timestamp(added)): added for change in changes
             for obj, added in object_versions(change, urls, every) if every.selects(obj)}
    return sorted(found.items(), key=lambda item: item[1])


def versions_page(found: Sequence[tuple[str, datetime]], cursor: Cursor,
                  limit: int) -> tuple[dict[str, Any], Page]:
    """A page of the versions resource (§5.6.1), and its dates for the headers."""
    shown = found[cursor.skip:cursor.skip + limit]
    more = cursor.skip + limit < len(found)
    result = Page([], [added for _, added in shown], more, Cursor(0, cursor.skip + limit) if more else None)
    body: dict[str, Any] = {"more": more}
    if more:
        body["next"] = str(result.next)
    if shown:
        body["versions"] = [version for version, _ in shown]
    return body, result


def envelope(result: Page) -> dict[str, Any]:
    """The objects of a page (§3.7, the envelope)."""
    return _paged(result, result.objects)


def manifest(result: Page) -> dict[str, Any]:
    """The manifest records of a page's objects (§5.4)."""
    records = [{"id": obj["id"], "date_added": timestamp(when), "version": version_of(obj, timestamp(when)),
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

