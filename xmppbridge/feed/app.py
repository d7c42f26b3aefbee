"""The ROLIE HTTP shell: aiohttp routes around the pure renderer in ``feed.atom``.

Every handler asks :func:`readable_restrictions` what the reader may see and treats anything else as
absent (404), so that access control can later be extended in that one place.

URL layout (relative to ``FeedSettings.base_url``)::

    /                                   405 (draft-ietf-mile-rolie-02 §5.17: no RID service here)
    /.well-known/rolie/servicedocument  application/atomsvc+xml
    /feeds/{restriction}[?page=N]       application/atom+xml;type=feed
    /entries/{id}                       application/atom+xml;type=entry
    /entries/{id}/iodef.xml             the stored signed IODEF document, application/xml
    /healthz                            JSON status

``application/xml`` is used for IODEF because no IODEF media type is registered.
Store calls are synchronous: SQLite reads in WAL mode are short and never wait for other processes'
writers (within this process the Store serialises calls on its one connection).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from aiohttp import web

from xmppbridge.feed import atom
from xmppbridge.feed.layout import COLLECTION_BY_RESTRICTION, ENTRIES_PATH, FEEDS_PATH, SERVICE_PATH, FeedUrls
from xmppbridge.feed.settings import FeedSettings
from xmppbridge.store import Entry, Store

__all__ = ["FeedSettings", "make_app", "readable_restrictions"]

STORE = web.AppKey("store", Store)
SETTINGS = web.AppKey("settings", FeedSettings)
URLS = web.AppKey("urls", FeedUrls)
HealthProbe = Callable[[], Mapping[str, object]]
HEALTH = web.AppKey("health", HealthProbe)

_MAX_ROW_ID = 2**63 - 1  # SQLite INTEGER; larger ids cannot exist


def make_app(store: Store, settings: FeedSettings, *, health: HealthProbe | None = None) -> web.Application:
    """The feed application. ``health`` adds fields to ``/healthz`` (e.g. the bridge's ``ready`` flag)."""
    app = web.Application()
    app.on_response_prepare.append(_no_sniffing)
    app[STORE] = store
    app[SETTINGS] = settings
    app[URLS] = FeedUrls(settings.base_url)
    app[HEALTH] = health or dict
    app.router.add_route("*", "/", root)
    app.router.add_get("/" + SERVICE_PATH, service_document)
    app.router.add_get("/" + FEEDS_PATH + "{restriction}", feed)
    app.router.add_get("/" + ENTRIES_PATH + "{entry_id:[0-9]+}", entry)
    app.router.add_get("/" + ENTRIES_PATH + "{entry_id:[0-9]+}/iodef.xml", iodef)
    app.router.add_get("/healthz", healthz)
    return app


def readable_restrictions(request: web.Request) -> frozenset[str]:
    """The restrictions whose collections and entries this reader may see.

    The single access decision of the feed: today every reader is anonymous; authentication (client
    certificates, users) will map an authenticated identity to its own set here.
    """
    return request.app[SETTINGS].anonymous_restrictions


async def _no_sniffing(request: web.Request, response: web.StreamResponse) -> None:
    """Browsers must not second-guess our media types (an IODEF document is not HTML)."""
    response.headers["X-Content-Type-Options"] = "nosniff"


def _xml(body: bytes, media_type: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": media_type})


async def root(request: web.Request) -> web.Response:
    raise web.HTTPMethodNotAllowed(request.method, [])


async def service_document(request: web.Request) -> web.Response:
    body = atom.service_document(request.app[URLS], readable_restrictions(request))
    return _xml(body, atom.SERVICE_MEDIA_TYPE + ";charset=utf-8")


def _page_number(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise web.HTTPBadRequest(text=f"page must be a positive integer, not {raw!r}")
    return int(raw)


async def feed(request: web.Request) -> web.Response:
    restriction = request.match_info["restriction"]
    if restriction not in COLLECTION_BY_RESTRICTION or restriction not in readable_restrictions(request):
        raise web.HTTPNotFound()
    store, settings = request.app[STORE], request.app[SETTINGS]
    number = _page_number(request)
    page = atom.Page.of(number, store.count_entries([restriction]), settings.page_size)
    if number > page.last:
        raise web.HTTPNotFound(text=f"there are only {page.last} page(s)")
    entries = store.entries(
        restrictions=[restriction], limit=settings.page_size, offset=(number - 1) * settings.page_size
    )
    newest = entries[:1] if number == 1 else store.entries(restrictions=[restriction], limit=1)
    updated = newest[0].updated_at if newest else datetime.now(UTC)
    body = atom.feed_document(
        request.app[URLS], restriction, entries, page=page, updated=updated, author=settings.author
    )
    return _xml(body, atom.FEED_MEDIA_TYPE + ";charset=utf-8")


def _readable_entry(request: web.Request) -> Entry:
    """The entry named in the URL, or 404 when it does not exist, is deleted or may not be read."""
    entry_id = int(request.match_info["entry_id"])
    found = request.app[STORE].entry(entry_id) if entry_id <= _MAX_ROW_ID else None
    if found is None or found.deleted or found.restriction not in readable_restrictions(request):
        raise web.HTTPNotFound()
    return found


async def entry(request: web.Request) -> web.Response:
    body = atom.entry_document(_readable_entry(request), request.app[URLS])
    return _xml(body, atom.ENTRY_MEDIA_TYPE + ";charset=utf-8")


async def iodef(request: web.Request) -> web.Response:
    """The signed document exactly as stored; no charset parameter, since its own XML declaration rules."""
    return _xml(_readable_entry(request).xml, atom.IODEF_MEDIA_TYPE)


async def healthz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    counts = {"entries": store.count_entries(), "rejects": store.count_rejects()}
    return web.json_response({"status": "ok", **counts, **request.app[HEALTH]()})
