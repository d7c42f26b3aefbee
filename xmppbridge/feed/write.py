"""AtomPub writes (RFC 5023 §9): POST a document to a collection, PUT a new version, DELETE to retract.

Every write goes the way ``xmppbridge publish`` goes: ``Publisher`` validates, splits and signs, the
outbox commits, the bridge's drain publishes (or retracts) on XMPP, and only then does the request get
its answer (201 / 200 / 204), so a client that got 201 knows the federation has it.

Decisions:

* A POST is refused (400) when any piece of the document has another restriction than the collection:
  the bridge never routes a document to another audience on its own, and never widens one.
* What every peer would refuse is refused here with the peers' reason and the fix (see ``publish``): an
  IncidentID name outside the domains this member speaks for is the client's to fix (400
  ``domain-not-allowed``); a signing certificate peers refuse (expired, ...) is the server's (503).
* A POST of an incident that already has a live entry is a conflict (409): replacing it is a PUT, so
  that nobody overwrites someone else's report by accident.
* PUT and DELETE apply to our own entries only; mirrored ones belong to their publisher (405).
  A PUT must keep IncidentID, restriction and purpose (they name the pubsub item); ``If-Match`` is
  honoured (412) but not required.
* When the bridge cannot publish within ``feed.write_timeout`` the document stays queued: 202.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from lxml import etree

from xmppbridge.errors import InputRejected, SignerUnusable
from xmppbridge.feed import atom
from xmppbridge.feed.http import (
    SETTINGS,
    STORE,
    etag_of,
    principal,
    readable_collection,
    readable_entry,
    unauthorized,
)
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.paths.publish import Accepted, Publisher
from xmppbridge.store import Entry, OutboxItem
from xmppbridge.store.items import SignedItem

PUBLISHER = web.AppKey("publisher", Publisher)
MAX_BODY_BYTES = 1_000_000  # an IODEF document (at most limits.max_document_bytes) or an entry around one
IODEF_TYPES = ("application/xml", "text/xml")


def _urls(request: web.Request) -> FeedUrls:
    return FeedUrls(request.app[SETTINGS].base_url)


def _publisher(request: web.Request) -> Publisher:
    publisher = request.app.get(PUBLISHER)
    if publisher is None:
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], text="this feed is read-only\n")
    return publisher


def _may_write(request: web.Request, restriction: str, purpose: str | None = None) -> None:
    who = principal(request)
    if who.anonymous:
        raise unauthorized("sign in to publish")
    allowed = (restriction in who.write.restrictions() if purpose is None
               else who.may_write(restriction, canonical_purpose(purpose)))
    if not allowed:
        raise web.HTTPForbidden(text=f"{who.name} may not publish {restriction} incidents"
                                     + (f" for {purpose}" if purpose else "") + "\n")


def _rejected(exc: InputRejected) -> web.HTTPBadRequest:
    """400 with the validator's own words: the reason code, the message, then every detail."""
    return web.HTTPBadRequest(text="\n".join([f"{exc.reason}: {exc}", *exc.details]) + "\n")


def iodef_from_entry(body: bytes) -> bytes:
    """The IODEF document carried inline in an Atom entry's content (draft-02 §5.12 style)."""
    root = parse_untrusted(body, max_bytes=MAX_BODY_BYTES)
    if root.tag != f"{{{atom.ATOM_NS}}}entry":
        raise InputRejected("expected an atom:entry", reason="not-an-entry")
    content = root.find(f"{{{atom.ATOM_NS}}}content")
    inline = [] if content is None else [child for child in content if isinstance(child.tag, str)]
    if content is None or content.get("src") is not None or len(inline) != 1:
        raise InputRejected("the entry must carry exactly one IODEF-Document inline in atom:content",
                            reason="no-inline-document")
    return etree.tostring(inline[0])  # with the namespace declarations it needs


def media_type(header: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` and parameters of a Content-Type header, lowercased."""
    kind, *params = header.split(";")
    pairs = (param.partition("=") for param in params)
    return kind.strip().lower(), {k.strip().lower(): v.strip().strip('"').lower() for k, _, v in pairs}


async def _document(request: web.Request) -> bytes:
    kind, params = media_type(request.headers.get("Content-Type", ""))
    body = await request.read()
    if kind in IODEF_TYPES:
        return body
    if kind == "application/atom+xml" and params.get("type", "entry") == "entry":
        try:
            return iodef_from_entry(body)
        except InputRejected as exc:
            raise _rejected(exc) from None
    raise web.HTTPUnsupportedMediaType(
        text=f"send an IODEF document ({', '.join(IODEF_TYPES)}) or an Atom entry carrying one inline"
             f" ({atom.ENTRY_MEDIA_TYPE}), not {kind or 'no Content-Type'}\n")


async def _prepare(request: web.Request, publisher: Publisher, data: bytes) -> list[SignedItem]:
    try:
        # Validation and signing take milliseconds of CPU: off the event loop.
        return await asyncio.to_thread(publisher.prepare, data)
    except SignerUnusable as exc:
        # Not the client's fault, and nothing it can change: the operator must replace the certificate.
        raise web.HTTPServiceUnavailable(text=f"{exc.reason}: {exc}\n") from None
    except InputRejected as exc:
        raise _rejected(exc) from None


async def _outcomes(request: web.Request, publisher: Publisher, ids: list[int]) -> list[OutboxItem]:
    """Wait for the drain; 202 if it is not done in time (the items stay queued), 502 if XMPP refused."""
    timeout = request.app[SETTINGS].write_timeout
    outcomes = await asyncio.gather(*(publisher.wait_async(i, timeout) for i in ids))
    if any(outcome is None for outcome in outcomes):
        raise web.HTTPAccepted(text=f"queued as outbox item(s) {', '.join(map(str, ids))}; the bridge will"
                                    " publish when it is connected\n")
    failed = [o for o in outcomes if o is not None and o.status == "failed"]
    if failed:
        raise web.HTTPBadGateway(text="the XMPP server refused: " + "; ".join(str(o.reason) for o in failed)
                                      + "\n")
    return [o for o in outcomes if o is not None]


def _published_entry(request: web.Request, outcome: OutboxItem) -> Entry:
    found = request.app[STORE].find_entry(outcome.service or "", outcome.node, outcome.item_id)
    if found is None:  # mark_published upserts in the same transaction that marks it published
        raise RuntimeError(f"outbox item {outcome.id} is published but has no entry")
    return found


def _entry_response(request: web.Request, entry: Entry, status: int) -> web.Response:
    urls = _urls(request)
    body = atom.entry_document(entry, urls)
    headers = {"Content-Type": atom.ENTRY_MEDIA_TYPE + ";charset=utf-8", "ETag": etag_of(body),
               "Content-Location": urls.entry(entry.id)}
    if status == 201:
        headers["Location"] = urls.entry(entry.id)
    return web.Response(status=status, body=body, headers=headers)


# -- handlers ------------------------------------------------------------------------------------------


async def post(request: web.Request) -> web.Response:
    restriction = readable_collection(request)
    publisher = _publisher(request)
    _may_write(request, restriction)
    items = await _prepare(request, publisher, await _document(request))
    store = request.app[STORE]
    for item in items:
        if item.incident.restriction != restriction:
            right = _urls(request).feed(item.incident.restriction)
            raise web.HTTPBadRequest(
                text=f"wrong-collection: incident {item.incident.id} is {item.incident.restriction}, this "
                     f"collection is {restriction}; POST it to {right}\n")
        _may_write(request, restriction, item.incident.purpose)
        existing = store.find_entry(publisher.service or "", item.node, item.item_id)
        if existing is not None and not existing.deleted:
            raise web.HTTPConflict(text=f"incident {item.incident.id} is already published at "
                                        f"{_urls(request).entry(existing.id)}; PUT a new version there\n")
    accepted: list[Accepted] = publisher.enqueue(items, source=f"http:{principal(request).name}")
    outcomes = await _outcomes(request, publisher, [a.outbox_id for a in accepted])
    created = [_published_entry(request, outcome) for outcome in outcomes]
    response = _entry_response(request, created[0], 201)
    for other in created[1:]:  # a document split per Incident made several entries
        response.headers.add("Link", f'<{_urls(request).entry(other.id)}>; rel="related"')
    return response


def _editable(request: web.Request) -> tuple[Entry, Publisher]:
    found = readable_entry(request)
    publisher = _publisher(request)
    _may_write(request, found.restriction, found.incident.purpose)
    if found.origin != "local" or found.service != publisher.service:
        reason = f"mirrored from {found.service}: only its publisher can change it\n"
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], text=reason)
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        current = {etag_of(atom.entry_document(found, _urls(request))), etag_of(found.xml)}
        tags = {tag.strip() for tag in if_match.split(",")}
        if "*" not in tags and not tags & current:
            raise web.HTTPPreconditionFailed(text="the entry has changed since you read it (ETag)\n")
    return found, publisher


async def put(request: web.Request) -> web.Response:
    found, publisher = _editable(request)
    items = await _prepare(request, publisher, await _document(request))
    if [(i.node, i.item_id) for i in items] != [(found.node, found.item_id)]:
        raise web.HTTPBadRequest(text=f"not-this-entry: a new version must keep the IncidentID, restriction"
                                      f" and purpose of {found.incident.id} (node {found.node}) and hold"
                                      " one Incident\n")
    [accepted] = publisher.enqueue(items, source=f"http:{principal(request).name}")
    [outcome] = await _outcomes(request, publisher, [accepted.outbox_id])
    return _entry_response(request, _published_entry(request, outcome), 200)


async def delete(request: web.Request) -> web.Response:
    found, publisher = _editable(request)
    outbox_id = publisher.retract(node=found.node, item_id=found.item_id, incident=found.incident,
                                  version=found.version, source=f"http:{principal(request).name}")
    await _outcomes(request, publisher, [outbox_id])
    return web.Response(status=204)
