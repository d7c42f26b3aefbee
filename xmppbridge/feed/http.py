"""Shell helpers shared by the feed's handlers: who is asking, what they accept, which page or search
they ask for, conditional responses.

Everything that reads request headers or the TLS session is here; renderers never see a request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Protocol

from aiohttp import web
from cryptography import x509
from multidict import CIMultiDict

from xmppbridge.feed.access import Principal, User
from xmppbridge.feed.layout import COLLECTION_BY_RESTRICTION, FeedUrls
from xmppbridge.feed.login import LoginGate
from xmppbridge.feed.opensearch import SearchRequest, parse_request
from xmppbridge.feed.settings import FeedSettings
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.policy.may import Action, Actor, Decides
from xmppbridge.store import Entry
from xmppbridge.store.contracts import Counted, EntryReads, FeedViews, PeerHealthReads, QuarantineReads
from xmppbridge.store.feedviews import Change, Document

log = logging.getLogger(__name__)


class FeedStore(EntryReads, FeedViews, QuarantineReads, Counted, PeerHealthReads, Protocol):
    """What the feed reads: entries and the feed's views of them; the quarantine's size, the counts and
    the peers' health for operators (health, dashboard). Only the read halves of the store's interfaces
    (``contracts.READS``): writes go through the publisher, into the outbox."""


STORE = web.AppKey("store", FeedStore)
SETTINGS = web.AppKey("settings", FeedSettings)
URLS = web.AppKey("urls", FeedUrls)
GATE = web.AppKey("gate", LoginGate)
POLICY = web.AppKey("policy", Decides)
PRINCIPAL = web.RequestKey("principal", Principal)

CHALLENGES = ('Basic realm="xmppbridge", charset="UTF-8"', 'Bearer realm="xmppbridge"')
# No scripts at all; inline style only; forms only to ourselves. HTML views embed untrusted text.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none';"
       " frame-ancestors 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- who is asking -------------------------------------------------------------------------------------


def unauthorized(message: str = "authentication required") -> web.HTTPUnauthorized:
    headers: CIMultiDict[str] = CIMultiDict()
    for challenge in CHALLENGES:
        headers.add("WWW-Authenticate", challenge)
    return web.HTTPUnauthorized(text=message + "\n", headers=headers)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the request's principal once: Authorization header first, then a client certificate.

    Wrong credentials are refused outright (401), never treated as anonymous, so that a typo does not
    quietly show a user less than they expect.
    """
    user = await _user(request, request.app[GATE])
    policy, actor = request.app[POLICY], Actor.user(None if user is None else user.name)
    request[PRINCIPAL] = Principal(None if user is None else user.name, policy.rights(actor, Action.READ),
                                   policy.rights(actor, Action.WRITE), user is not None and user.operator)
    return await handler(request)


async def _user(request: web.Request, gate: LoginGate) -> User | None:
    header = request.headers.get("Authorization")
    if header is not None:
        client = gate.client(request.remote, request.headers.get("X-Forwarded-For"))
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                name, colon, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise unauthorized("malformed Basic credentials") from None
            # Throttled, and scrypt (~40 ms on a miss) runs off the event loop (feed.login).
            user = await gate.basic(client, name, password) if colon else None
        elif scheme.lower() == "bearer":
            user = await gate.bearer(client, value.strip())
        else:
            raise unauthorized(f"unsupported authorization scheme {scheme!r}; use Basic or Bearer")
        if user is None:
            raise unauthorized("wrong user name, password or token")
        return user
    subject = _client_subject(request)
    if subject is None:
        return None
    user = gate.auth.certificate(subject)
    if user is None:
        log.info("client certificate %s maps to no user; treated as anonymous", subject)
    return user


def _client_subject(request: web.Request) -> str | None:
    """RFC 4514 subject of the client's certificate; only a verified one reaches us (CERT_OPTIONAL)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]  # type: ignore[no-any-return]


def readable_collection(request: web.Request) -> str:
    """The collection named in the URL, if this reader may see it: anonymous readers are asked to log
    in (collection names are no secret), users without rights get 404 as if it did not exist."""
    restriction = request.match_info["restriction"]
    if restriction not in COLLECTION_BY_RESTRICTION:
        raise web.HTTPNotFound()
    who = principal(request)
    if restriction not in who.read.restrictions():
        raise unauthorized() if who.anonymous else web.HTTPNotFound()
    return restriction


def readable_entry(request: web.Request, *, allow_deleted: bool = False) -> Entry:
    """The entry named in the URL, or 404 when it does not exist or may not be read (indistinguishable),
    or 410 when it was deleted (retracted) and the reader could see it."""
    raw = request.match_info["entry_id"]
    entry_id = int(raw) if len(raw) < 19 else None  # larger than any SQLite row id
    found = request.app[STORE].entry(entry_id) if entry_id is not None else None
    if found is None or not may_read(request, found):
        raise web.HTTPNotFound()
    if found.deleted and not allow_deleted:
        raise web.HTTPGone(text="this entry was retracted\n")
    return found


def may_read(request: web.Request, entry: Entry) -> bool:
    return principal(request).may_read(entry.restriction, canonical_purpose(entry.incident.purpose))


# -- what they accept ----------------------------------------------------------------------------------


def whole_number(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number, not {raw!r}\n")
    return int(raw)


def page_count(request: web.Request) -> int:
    settings = request.app[SETTINGS]
    count = whole_number(request, "count")
    if count is None:
        return settings.page_size
    if not 1 <= count <= settings.max_page_size:
        raise web.HTTPBadRequest(text=f"count must be between 1 and {settings.max_page_size}\n")
    return count


Page = tuple[int, int | None, int | None]  # count, before, after


def collection_page(request: web.Request) -> tuple[str, frozenset[str] | None, Page, list[Change]]:
    """The collection a request names (if the reader may read it), the purposes the reader may see in
    it, the page parameters, and that page of its current state (RFC 5005 §3, by change number)."""
    restriction = readable_collection(request)
    purposes = principal(request).read.purposes(restriction)
    count = page_count(request)
    before, after = whole_number(request, "before"), whole_number(request, "after")
    if before is not None and after is not None:
        raise web.HTTPBadRequest(text="give before or after, not both\n")
    changes = request.app[STORE].current_page(restriction, purposes, limit=count, before=before, after=after)
    return restriction, purposes, (count, before, after), changes


def with_documents(request: web.Request, entries: Sequence[Entry]) -> list[Entry]:
    """``entries`` with their current documents and stored indicators, read in one statement (pages and
    search results come without them): for the exports, which read every document of a page."""
    documents = request.app[STORE].current_documents([entry.id for entry in entries])
    missing = Document(b"", None)
    return [replace(entry, xml=(found := documents.get(entry.id, missing)).xml, indicators=found.indicators)
            for entry in entries]


def search_results(request: web.Request) -> tuple[SearchRequest, list[Entry]]:
    """What a search request asks for (OpenSearch parameters) and the page of entries the reader may read
    that match it; 400 with the reason for a malformed one."""
    settings = request.app[SETTINGS]
    try:
        wanted = parse_request(list(request.query.items()), default_count=settings.page_size,
                               max_count=settings.max_page_size)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    readable = principal(request).read.readable()
    return wanted, request.app[STORE].search(wanted.query, readable, limit=wanted.count, offset=wanted.offset)


def _quality(accept: str, ranges: tuple[str, ...]) -> float:
    """The q of the most specific range in ``accept`` that matches one of ``ranges`` (0 if none)."""
    best, best_specificity = 0.0, -1
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        media = media.lower()
        if media not in ranges:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        specificity = 0 if media == "*/*" else 1 if media.endswith("/*") else 2
        if specificity > best_specificity:
            best, best_specificity = q, specificity
    return best


def wants_html(request: web.Request) -> bool:
    """True when the client prefers HTML to the XML representation (a browser); ties go to XML."""
    accept = request.headers.get("Accept", "*/*")
    html = _quality(accept, ("text/html", "text/*", "*/*"))
    xml = _quality(accept, ("application/atom+xml", "application/atomsvc+xml", "application/atomcat+xml",
                            "application/opensearchdescription+xml", "application/xml", "application/*",
                            "*/*"))
    return html > xml


# -- conditional responses -----------------------------------------------------------------------------


def etag_of(body: bytes) -> str:
    """A strong validator: the same bytes, the same tag, whichever request made them."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(header: str, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, RFC 9110 §13.1.2)."""
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def _not_modified(request: web.Request, etag: str, last_modified: datetime | None) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:  # RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since
        return matches(if_none_match, etag)
    since = request.headers.get("If-Modified-Since")
    if since is None or last_modified is None:
        return False
    try:
        threshold = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    return last_modified.replace(microsecond=0) <= threshold


def respond(request: web.Request, body: bytes, content_type: str, *, last_modified: datetime | None = None,
            max_age: int = 0, etag: str | None = None) -> web.Response:
    """200 with validators, or 304 when the client's copy is current. Responses depend on who asks, so
    they vary by Authorization, and authenticated ones are private to that user's cache. ``etag``: a
    validator the caller told before building ``body`` (it must change whenever the body would), else the
    body's own."""
    headers = validator_headers(request, etag or etag_of(body), max_age)
    if last_modified is not None:
        headers["Last-Modified"] = format_datetime(last_modified.astimezone(UTC), usegmt=True)
    if request.method in ("GET", "HEAD") and _not_modified(request, headers["ETag"], last_modified):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def validator_headers(request: web.Request, etag: str, max_age: int = 0) -> dict[str, str]:
    """ETag, Vary and Cache-Control, as a 200 and its 304 both carry them (RFC 9110 §15.4.5)."""
    cache = "no-cache" if max_age == 0 else f"max-age={max_age}"
    if not principal(request).anonymous:
        cache = "private, " + cache
    return {"ETag": etag, "Vary": "Accept, Authorization", "Cache-Control": cache}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Browsers must not second-guess our media types (an IODEF document is not HTML), run scripts or
    frame our pages."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "no-referrer"
