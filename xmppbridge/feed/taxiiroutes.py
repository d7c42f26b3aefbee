"""The TAXII 2.1 shell (``feed/taxii.py`` renders and pages): the feed's users, rights and TLS, and its
rule that what a reader may not see answers 404, exactly as if it were not there."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from aiohttp import web

from xmppbridge.feed import taxii
from xmppbridge.feed.http import STORE, URLS, may_read, principal, respond, whole_number, with_documents
from xmppbridge.feed.taxiimatch import FIELDS, Match
from xmppbridge.iodef.classify import parse_datetime
from xmppbridge.iodef.markings import RESTRICTIONS
from xmppbridge.store.entries import Entry

TITLE = "xmppbridge incident mirror"
_BATCH = 50  # entries read per store query while filling a page
# What one page reads at most, so that filters matching few objects cannot make a request read a whole
# store: entries turned into STIX (a few ms each), and entries of the change log looked at.
_SCAN = 500
_READ = 20_000
_CANDIDATES = 50  # entries looked at for an object by id: those that may hold it, newest first


def add_routes(router: web.UrlDispatcher) -> None:
    base = "/" + taxii.API + "collections/{collection}/"
    router.add_get("/" + taxii.ROOT, discovery)
    router.add_get("/" + taxii.API, api_root)
    router.add_get("/" + taxii.API + "collections/", collections)
    router.add_get(base, collection)
    router.add_get(base + "objects/", objects)
    router.add_get(base + "manifest/", manifest)
    router.add_get(base + "objects/{object}/", one_object)
    router.add_get(base + "objects/{object}/versions/", versions)


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


def _paging(request: web.Request, allowed: Sequence[str] = FIELDS) -> tuple[int, taxii.Cursor | None, Match]:
    """limit, next (None: none given) and the match[] filters of a request; 400 for bad ones."""
    limit = min(whole_number(request, "limit") or taxii.DEFAULT_LIMIT, taxii.MAX_LIMIT)
    if limit < 1:
        raise _bad("limit must be at least 1")
    try:
        cursor = taxii.Cursor.parse(request.query["next"]) if "next" in request.query else None
        return limit, cursor, Match.parse(request.query, allowed)
    except ValueError as exc:
        raise _bad(str(exc)) from None


def _history(request: web.Request, entry: Entry, match: Match) -> list[Entry]:
    """The earlier versions of an entry, oldest first, when the filter asks for more than the latest."""
    if match.latest_only or entry.revision < 2:
        return []
    return [r.entry for r in reversed(request.app[STORE].revisions(entry.id)) if r.superseded_at is not None]


def _entries_named(request: web.Request, restriction: str, match: Match) -> set[int] | None:
    """When match[id] names objects that few entries hold (not an identity or a marking, which every
    entry of a member or of the collection holds): the entries of the collection that may hold them, so
    that a page renders those alone (None: any entry may hold what the filters select)."""
    if match.ids is None or any(i.startswith(("identity--", "marking-definition--")) for i in match.ids):
        return None
    store = request.app[STORE]
    named: set[int] = set()
    for object_id in match.ids:
        kind, _, uuid = object_id.partition("--")
        if kind == "incident":
            named |= {e.id for e in store.entries_holding(uuid.lower()) if e.restriction == restriction}
            continue
        holders = store.object_holders(object_id, restriction, None, limit=_READ)
        if len(holders) == _READ:  # too many to list: walk the collection instead
            return None
        named.update(holders)
    return named


def _page(request: web.Request) -> taxii.Page:
    restriction = _restriction(request)
    store = request.app[STORE]
    purposes = principal(request).read.purposes(restriction)
    limit, cursor, match = _paging(request)
    if cursor is None:
        try:
            added_after = request.query.get("added_after")
            cursor = taxii.Cursor(store.seq_at(restriction, _moment(added_after)) if added_after else 0)
        except ValueError as exc:
            raise _bad(str(exc)) from None
    pager = taxii.Pager(cursor, limit, request.app[URLS], match)
    named = _entries_named(request, restriction, match)
    after, rendered, read, full = cursor.seq, 0, 0, False
    # Entries until the page is full or none is left; filters may skip many, so a page also stops after
    # _SCAN rendered or _READ read entries, with more and a next where it stopped.
    while not full:
        asked = min(_BATCH, _SCAN - rendered)
        batch = store.current_page(restriction, purposes, limit=asked, after=after)
        batch.reverse()  # oldest first
        live = [c for c in batch if not c.entry.deleted and (named is None or c.entry.id in named)]
        loaded = with_documents(request, [c.entry for c in live])
        for change, entry in zip(live, loaded, strict=True):
            if pager.add(taxii.Change(change.seq, entry, _history(request, entry, match))):
                full = True
                break
        exhausted = len(batch) < asked
        if batch:
            after = batch[-1].seq
        rendered, read = rendered + len(live), read + len(batch)
        if exhausted or rendered >= _SCAN or read >= _READ:
            break
    if not full and not exhausted:
        exhausted = not store.has_current(restriction, purposes, above=after)
    return pager.page(exhausted=exhausted, last_seq=after)


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


def _holding(request: web.Request) -> taxii.Change:
    """The newest live entry of this collection that the reader may read and that holds the object the
    URL names, in one of its versions, with its earlier versions; 404 for anything else, as if it were not
    there. Incidents are found by their UUID, a collection's TLP marking in any of its entries, and every
    other object through the object index (``store.objectindex``)."""
    restriction = _restriction(request)
    object_id = request.match_info["object"]
    kind, _, uuid = object_id.partition("--")
    store = request.app[STORE]
    purposes = principal(request).read.purposes(restriction)
    candidates: Iterable[Entry]
    if kind == "incident":
        candidates = sorted((e for e in store.entries_holding(uuid.lower())
                             if not e.deleted and e.restriction == restriction),
                            key=lambda e: e.updated_at, reverse=True)
    elif kind == "marking-definition":
        newest = store.current_page(restriction, purposes, limit=_CANDIDATES)
        candidates = with_documents(request, [c.entry for c in newest if not c.entry.deleted])
    else:
        # read one at a time: the newest holder nearly always answers, and each read is a query
        holders = store.object_holders(object_id, restriction, purposes, limit=_CANDIDATES)
        candidates = (entry for i in holders if (entry := store.entry(i)) is not None)
    every = Match(ids=frozenset([object_id]), versions=("all",))
    for entry in candidates:
        if not may_read(request, entry):
            continue
        change = taxii.Change(1, entry, _history(request, entry, every))
        if any(every.selects(obj) for obj, _ in taxii.object_versions(change, request.app[URLS], every)):
            return change
    raise _not_found("object")


async def one_object(request: web.Request) -> web.Response:
    """An object by its id (§5.5), in the versions match[version] selects (default the latest), from the
    newest entry holding it (a document split or sent again holds it once more; an observable that many
    incidents name is the same object in each)."""
    change = _holding(request)
    limit, cursor, match = _paging(request, ("version", "spec_version"))
    match = replace(match, ids=frozenset([request.match_info["object"]]))
    pager = taxii.Pager(cursor or taxii.Cursor(), limit, request.app[URLS], match)
    pager.add(change)
    result = pager.page(exhausted=True, last_seq=1)
    if not result.objects:
        raise _not_found("object")
    return _json(request, taxii.envelope(result), headers=taxii.date_headers(result))


async def versions(request: web.Request) -> web.Response:
    """The versions of an object (§5.6), oldest first, with added_after, limit and next."""
    change = _holding(request)
    limit, cursor, match = _paging(request, ("spec_version",))
    found = taxii.versions([change], request.match_info["object"], request.app[URLS], match)
    if "added_after" in request.query:
        try:
            after = _moment(request.query["added_after"])
        except ValueError as exc:
            raise _bad(str(exc)) from None
        found = [(version, added) for version, added in found if added > after]
    body, result = taxii.versions_page(found, cursor or taxii.Cursor(), limit)
    return _json(request, body, headers=taxii.date_headers(result))
