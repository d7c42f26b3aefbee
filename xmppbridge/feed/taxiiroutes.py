"""The TAXII 2.1 shell (``feed/taxii.py`` renders and pages): the feed's users, rights and TLS, and its
rule that what a reader may not see answers 404, exactly as if it were not there."""

from __future__ import annotations

import json
from datetime import datetime

from aiohttp import web

from xmppbridge.feed import taxii
from xmppbridge.feed.http import STORE, URLS, may_read, principal, respond, whole_number, with_documents
from xmppbridge.iodef.classify import parse_datetime
from xmppbridge.iodef.markings import RESTRICTIONS

TITLE = "xmppbridge incident mirror"
_BATCH = 50  # entries read per store query while filling a page


def add_routes(router: web.UrlDispatcher) -> None:
    base = "/" + taxii.API + "collections/{collection}/"
    router.add_get("/" + taxii.ROOT, discovery)
    router.add_get("/" + taxii.API, api_root)
    router.add_get("/" + taxii.API + "collections/", collections)
    router.add_get(base, collection)
    router.add_get(base + "objects/", objects)
    router.add_get(base + "manifest/", manifest)
    router.add_get(base + "objects/{object}/", one_object)


def _json(request: web.Request, body: object, *, headers: dict[str, str] | None = None) -> web.Response:
    response = respond(request, json.dumps(body, sort_keys=True).encode(), taxii.MEDIA_TYPE)
    response.headers.update(headers or {})
    return response


def _not_found(what: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=taxii.error(404, f"no such {what}"), content_type="application/taxii+json")


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=taxii.error(400, message), content_type="application/taxii+json")


async def discovery(request: web.Request) -> web.Response:
    return _json(request, taxii.discovery(request.app[URLS], TITLE))


async def api_root(request: web.Request) -> web.Response:
    return _json(request, taxii.api_root(TITLE))


def _readable(request: web.Request) -> list[str]:
    readable = principal(request).read.restrictions()
    return [restriction for restriction in RESTRICTIONS if restriction in readable]


async def collections(request: web.Request) -> web.Response:
    found = [taxii.collection(r) for r in _readable(request)]
    return _json(request, {"collections": found} if found else {})


def _restriction(request: web.Request) -> str:
    wanted = request.match_info["collection"]
    for restriction in _readable(request):
        if taxii.collection_id(restriction) == wanted:
            return restriction
    raise _not_found("collection")


async def collection(request: web.Request) -> web.Response:
    return _json(request, taxii.collection(_restriction(request)))


def _page(request: web.Request) -> taxii.Page:
    restriction = _restriction(request)
    store = request.app[STORE]
    purposes = principal(request).read.purposes(restriction)
    limit = min(whole_number(request, "limit") or taxii.DEFAULT_LIMIT, taxii.MAX_LIMIT)
    if limit < 1:
        raise _bad("limit must be at least 1")
    try:
        if "next" in request.query:
            cursor = taxii.Cursor.parse(request.query["next"])
        elif "added_after" in request.query:
            cursor = taxii.Cursor(store.seq_at(restriction, _moment(request.query["added_after"])))
        else:
            cursor = taxii.Cursor()
    except ValueError as exc:
        raise _bad(str(exc)) from None
    changes: list[taxii.Change] = []
    after, objects_wanted = cursor.seq, limit + cursor.skip
    while True:  # entries until the page is full (an entry gives at least three objects) or none is left
        batch = store.current_page(restriction, purposes, limit=_BATCH, after=after)
        batch.reverse()  # oldest first
        live = [c for c in batch if not c.entry.deleted]
        loaded = with_documents(request, [c.entry for c in live])
        changes += [taxii.Change(c.seq, entry) for c, entry in zip(live, loaded, strict=True)]
        exhausted = len(batch) < _BATCH
        if batch:
            after = batch[-1].seq
        if exhausted or len(changes) * 3 >= objects_wanted:
            break
    if changes and not exhausted:
        exhausted = not store.has_current(restriction, purposes, above=after)
    return taxii.page(changes, cursor, limit, request.app[URLS], exhausted=exhausted,
                      last_seq=after)



def _moment(text: str) -> datetime:
    moment = parse_datetime(text)
    if moment is None:
        raise ValueError(f"added_after must be an RFC 3339 timestamp, not {text!r}")
    return moment


async def objects(request: web.Request) -> web.Response:
    result = _page(request)
    return _json(request, taxii.envelope(result), headers=taxii.date_headers(result))


async def manifest(request: web.Request) -> web.Response:
    result = _page(request)
    return _json(request, taxii.manifest(result), headers=taxii.date_headers(result))


async def one_object(request: web.Request) -> web.Response:
    """An incident by its id; what the reader may not read, or any other object, is not found."""
    restriction = _restriction(request)
    kind, _, uuid = request.match_info["object"].partition("--")
    if kind != "incident":
        raise _not_found("object")
    holding = [e for e in request.app[STORE].entries_holding(uuid.lower())
               if not e.deleted and e.restriction == restriction and may_read(request, e)]
    if not holding:
        raise _not_found("object")
    entry = max(holding, key=lambda e: e.updated_at)
    result = taxii.page([taxii.Change(1, entry)], taxii.Cursor(), taxii.MAX_LIMIT, request.app[URLS],
                        exhausted=True, last_seq=1)
    found = [obj for obj in result.objects if obj["id"] == request.match_info["object"]]
    return _json(request, taxii.envelope(taxii.Page(found, result.added[:len(found)], False, None)),
                 headers=taxii.date_headers(result))

