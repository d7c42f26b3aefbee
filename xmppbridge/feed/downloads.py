"""Exports for the analysts' tools: an entry, a page of a collection, or a page of search results, as a
CSV of indicators (``feed/export.py``) or as a STIX 2.1 bundle (``feed/stix.py``); and a MISP feed
(``feed/misp.py``).

Each one is exactly the entries its feed view shows the same reader, with the same page parameters
(``count``, ``before``/``after``; the OpenSearch parameters for a search), so an export never holds
anything the reader's feed would not: the access rule is the feed's, applied once, in the selection.
Deleted entries (tombstones in the feed) have nothing to export and are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from aiohttp import web

from xmppbridge.feed import export, misp, stix
from xmppbridge.feed.http import (
    STORE,
    URLS,
    collection_page,
    may_read,
    principal,
    readable_entry,
    respond,
    search_results,
    with_documents,
)
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.store import Entry
from xmppbridge.store.search import SearchQuery

Render = Callable[[Sequence[Entry], FeedUrls], bytes]
# The file name at the end of the URL -> how to render it and its media type.
FORMATS: dict[str, tuple[Render, str]] = {
    "indicators.csv": (export.indicators_csv, export.MEDIA_TYPE),
    "stix.json": (stix.bundle, stix.MEDIA_TYPE),
}
FORMAT = "{format:" + "|".join(name.replace(".", r"\.") for name in FORMATS) + "}"  # an aiohttp route part


def _respond(request: web.Request, entries: Sequence[Entry]) -> web.Response:
    render, media_type = FORMATS[request.match_info["format"]]
    live = [entry for entry in entries if not entry.deleted]
    if any(not entry.xml for entry in live):  # pages and search results come without their documents
        live = with_documents(request, live)
    newest: datetime | None = max((e.updated_at for e in live), default=None)
    return respond(request, render(live, request.app[URLS]), media_type, last_modified=newest)


async def of_entry(request: web.Request) -> web.Response:
    return _respond(request, [readable_entry(request)])


async def of_collection(request: web.Request) -> web.Response:
    *_, changes = collection_page(request)
    return _respond(request, [change.entry for change in changes])


async def of_search(request: web.Request) -> web.Response:
    _, found = search_results(request)
    return _respond(request, found)


# -- the MISP feed -------------------------------------------------------------------------------------
# A MISP feed has no paging: its manifest lists the events, and MISP fetches those it lacks or holds
# older versions of. So the manifest is a window: the newest MISP_WINDOW entries the reader may read.


MISP_WINDOW = 10_000
# hashes.csv reads the window's documents this many at a time: all 10,000 at once held 40 MB of XML
# (twice, with the driver's rows) and took the feed process past 200 MB on PostgreSQL.
_DOCUMENTS_AT_ONCE = 500


def _misp_window(request: web.Request) -> dict[str, Entry]:
    found = request.app[STORE].search(SearchQuery(), principal(request).read.readable(), limit=MISP_WINDOW)
    return misp.window(found)


async def misp_manifest(request: web.Request) -> web.Response:
    window = _misp_window(request)
    newest = max((e.updated_at for e in window.values()), default=None)
    return respond(request, misp.manifest(window), misp.MEDIA_TYPE, last_modified=newest)


async def misp_hashes(request: web.Request) -> web.Response:
    window = list(_misp_window(request).items())
    newest = max((e.updated_at for _, e in window), default=None)
    parts = []
    for start in range(0, len(window), _DOCUMENTS_AT_ONCE):
        uuids, entries = zip(*window[start:start + _DOCUMENTS_AT_ONCE], strict=True)
        parts.append(misp.hashes_csv(dict(zip(uuids, with_documents(request, entries), strict=True))))
    return respond(request, b"".join(parts), misp.CSV_MEDIA_TYPE, last_modified=newest)


async def misp_event(request: web.Request) -> web.Response:
    """One event by its UUID: the newest live entry holding that incident that the reader may read; 404,
    as for anything else the reader may not see, otherwise."""
    holding = request.app[STORE].entries_holding(request.match_info["uuid"].lower())
    readable = [entry for entry in holding if may_read(request, entry)]
    found = next(iter(misp.window(readable).values()), None)
    if found is None:
        raise web.HTTPNotFound()
    return respond(request, misp.event_json(found), misp.MEDIA_TYPE, last_modified=found.updated_at)
