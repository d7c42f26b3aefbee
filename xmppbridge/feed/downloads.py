"""Exports for the analysts' tools: an entry, a page of a collection, or a page of search results, as a
CSV of indicators (``feed/export.py``) or as a STIX 2.1 bundle (``feed/stix.py``); and a MISP feed
(``feed/misp.py``).

Each one is exactly the entries its feed view shows the same reader, with the same page parameters
(``count``, ``before``/``after``; the OpenSearch parameters for a search), so an export never holds
anything the reader's feed would not: the access rule is the feed's, applied once, in the selection.
Deleted entries (tombstones in the feed) have nothing to export and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from aiohttp import web

from xmppbridge.feed import export, misp, stix
from xmppbridge.feed.http import (
    STORE,
    URLS,
    collection_page,
    etag_of,
    matches,
    may_read,
    principal,
    readable_entry,
    respond,
    search_results,
    validator_headers,
    with_documents,
)
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.store import Entry
from xmppbridge.store.entries import Head

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
#
# What MISP does with them (app/Model/Feed.php, MISP 2.4/2.5): each fetch of a feed GETs manifest.json
# with If-None-Match set to the ETag it stored with its cached copy, and reads that copy on a 304
# (getRemoteManifest); it GETs hashes.csv without validators whenever it caches the feed for correlation
# (getCache), and keeps the hashes in Redis sets. So the manifest's ETag is told before anything is built
# (``_validator``), and a periodic pull that changed nothing costs one small statement; hashes.csv,
# always built, is made from the indicator index instead of the documents.


MISP_WINDOW = 10_000
# Bumped when what the manifest or hashes.csv hold for the same store changes, so that a MISP holding an
# older rendering's ETag gets the new one.
_MISP_RENDERING = 2


def _validator(request: web.Request) -> str:
    """The ETag of this reader's manifest or hashes.csv, from the reader's rights and the last change of
    each collection they may read: any change to an entry, its move to another collection included, is
    a new change in the collection (``store.changelog``), so nothing the window could hold changes while
    this stays. Readers with the same rights get the same bytes and so the same tag; readers with other
    rights get another one, so one viewer's tag never validates another's answer (and no answer is kept
    for anyone: each 200 is built for who asks)."""
    readable = principal(request).read.readable()
    seqs = request.app[STORE].last_seqs(readable)
    state = [_MISP_RENDERING, request.path, MISP_WINDOW,
             [[c, None if p is None else sorted(p), seqs.get(c, 0)] for c, p in sorted(readable.items())]]
    return etag_of(json.dumps(state).encode())


def _not_modified(request: web.Request, etag: str) -> web.Response | None:
    """304 before the body is built, for a client that sent this ETag (what MISP sends)."""
    if request.method in ("GET", "HEAD") and matches(request.headers.get("If-None-Match", ""), etag):
        return web.Response(status=304, headers=validator_headers(request, etag))
    return None


def _misp_window(request: web.Request) -> dict[str, Head]:
    return misp.window(request.app[STORE].heads(principal(request).read.readable(), limit=MISP_WINDOW))


async def misp_manifest(request: web.Request) -> web.Response:
    etag = _validator(request)
    if (unchanged := _not_modified(request, etag)) is not None:
        return unchanged
    window = _misp_window(request)
    newest = max((e.updated_at for e in window.values()), default=None)
    return respond(request, misp.manifest(window), misp.MEDIA_TYPE, last_modified=newest, etag=etag)


async def misp_hashes(request: web.Request) -> web.Response:
    etag = _validator(request)
    if (unchanged := _not_modified(request, etag)) is not None:
        return unchanged
    window = _misp_window(request)
    stored = request.app[STORE].stored_indicators([head.entry_id for head in window.values()])
    rows = {uuid: stored.get(head.entry_id, ()) for uuid, head in window.items()}
    newest = max((e.updated_at for e in window.values()), default=None)
    return respond(request, misp.hashes_csv(rows), misp.CSV_MEDIA_TYPE, last_modified=newest, etag=etag)


async def misp_event(request: web.Request) -> web.Response:
    """One event by its UUID: the newest live entry holding that incident that the reader may read; 404,
    as for anything else the reader may not see, otherwise."""
    holding = request.app[STORE].entries_holding(request.match_info["uuid"].lower())
    readable = {entry.id: entry for entry in holding if not entry.deleted and may_read(request, entry)}
    newest = next(iter(misp.window(entry.head() for entry in readable.values()).values()), None)
    if newest is None:
        raise web.HTTPNotFound()
    found = readable[newest.entry_id]
    return respond(request, misp.event_json(found), misp.MEDIA_TYPE, last_modified=found.updated_at)
