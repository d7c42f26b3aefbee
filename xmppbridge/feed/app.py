"""The ROLIE HTTP shell: aiohttp routes around the pure renderers (``atom``, ``html``, ``opensearch``).

Every handler asks the request's ``Principal`` (``http.authenticate``) what the reader may see and treats
anything else as absent (404). Browsers (Accept: text/html) get HTML views of the same URLs.

URL layout (relative to ``FeedSettings.base_url``)::

    /                                     405 (draft-ietf-mile-rolie-02 §5.17: no RID service here)
    /.well-known/rolie/servicedocument    application/atomsvc+xml
    /.well-known/rolie/categorydocument   application/atomcat+xml
    /feeds/{restriction}                  the newest page of a collection; ?before=SEQ / ?after=SEQ page
                                          through it (after=0: the oldest page), ?count=N sets the size;
                                          POST publishes (write.py)
    /feeds/{restriction}/archive/{n}      RFC 5005 archive n: changes (n-1)*size+1 .. n*size, immutable
    /entries/{id}                         application/atom+xml;type=entry; PUT, DELETE (write.py)
    /entries/{id}/iodef.xml               the entry's current signed IODEF document, application/xml
    /entries/{id}/revisions/{n}/iodef.xml one version of it
    /entries/{id}/history                 every version, as a complete feed
    /search/description                   OpenSearch 1.1 description
    /search?...                           results as a paged feed (see opensearch.py for parameters)
    /login                                asks a browser for credentials, then goes to the service document
    /healthz                              {"status": "up"}; operators (``operator: true``) get the detail
    /metrics                              Prometheus text, to operators only (404 to everyone else)

Metrics and detailed health show private entry counts, refusal reasons and the consortium's members, so
on this listener they are for operator users only; ``xmppbridge.operator`` serves them on a loopback
listener of their own for monitoring.

``application/xml`` is used for IODEF because no IODEF media type is registered.
Store calls are synchronous: SQLite reads in WAL mode are short and never wait for other processes'
writers (within this process the Store serialises calls on its one connection).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from aiohttp import web

from xmppbridge.feed import atom, dashboard, downloads, html, opensearch, taxiiroutes, write
from xmppbridge.feed.auth import Authenticator
from xmppbridge.feed.http import (
    GATE,
    POLICY,
    SETTINGS,
    STORE,
    URLS,
    FeedStore,
    authenticate,
    collection_page,
    may_read,
    principal,
    readable_collection,
    readable_entry,
    respond,
    search_results,
    security_headers,
    unauthorized,
    wants_html,
)
from xmppbridge.feed.layout import (
    CATEGORY_PATH,
    ENTRIES_PATH,
    FEEDS_PATH,
    LOGIN_PATH,
    SEARCH_DESCRIPTION_PATH,
    SEARCH_PATH,
    SERVICE_PATH,
    FeedUrls,
)
from xmppbridge.feed.login import LoginGate
from xmppbridge.feed.settings import FeedSettings, feed_policy
from xmppbridge.feed.throttle import Throttle
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.paths.publish import Publisher
from xmppbridge.policy.may import Decides
from xmppbridge.store import Entry

__all__ = ["FeedSettings", "make_app"]

HealthProbe = Callable[[], Mapping[str, object]]
HEALTH = web.AppKey("health", HealthProbe)
Exposition = Callable[[], tuple[bytes, str]]  # (body, content type) of a metrics scrape
METRICS = web.AppKey("metrics", Exposition)
# atom:updated (and Last-Modified) of a collection or search result without entries: it was never
# changed. A constant, not the time of the request, so that every process answers an empty feed with the
# same bytes and validators (and a client polling it gets 304 until something arrives).
NEVER = datetime(1970, 1, 1, tzinfo=UTC)
SEARCH_COUNT_CAP = 10_000  # beyond this many results the total is not counted (opensearch:totalResults)
_ENTRY = "{entry_id:[0-9]+}"


def make_app(store: FeedStore, settings: FeedSettings, *, health: HealthProbe | None = None,
             publisher: Publisher | None = None, policy: Decides | None = None,
             throttle: Throttle | None = None, metrics: Exposition | None = None) -> web.Application:
    """The feed application. ``health`` is the detailed ``/healthz`` operators see (default: the store's
    counts); ``metrics`` serves ``/metrics`` to operators; ``throttle`` counts failed logins (default: a
    fresh one from ``settings.throttle``); with a ``publisher``, users with write rights may POST, PUT
    and DELETE (AtomPub). ``policy`` decides who reads and writes what (``Config.policy``; by default
    the feed users' and anonymous rights)."""
    app = web.Application(middlewares=[authenticate], client_max_size=write.MAX_BODY_BYTES)
    app.on_response_prepare.append(security_headers)
    app[STORE] = store
    app[SETTINGS] = settings
    app[GATE] = LoginGate(Authenticator(settings.users), throttle or Throttle(settings.throttle))
    app[POLICY] = policy or feed_policy(settings)
    app[URLS] = FeedUrls(settings.base_url)
    app[HEALTH] = health or (lambda: store_health(store))
    if metrics is not None:
        app[METRICS] = metrics
    if publisher is not None:
        app[write.PUBLISHER] = publisher
    router = app.router
    router.add_route("*", "/", root)
    router.add_get("/" + SERVICE_PATH, service_document)
    router.add_get("/" + CATEGORY_PATH, category_document)
    router.add_get("/" + FEEDS_PATH + "{restriction}", feed)
    router.add_post("/" + FEEDS_PATH + "{restriction}", write.post)
    router.add_get("/" + FEEDS_PATH + "{restriction}/archive/{number:[0-9]+}", archive)
    router.add_get("/" + ENTRIES_PATH + _ENTRY, entry)
    router.add_put("/" + ENTRIES_PATH + _ENTRY, write.put)
    router.add_delete("/" + ENTRIES_PATH + _ENTRY, write.delete)
    router.add_get("/" + ENTRIES_PATH + _ENTRY + "/iodef.xml", iodef)
    router.add_get("/" + ENTRIES_PATH + _ENTRY + "/revisions/{number:[0-9]+}/iodef.xml", revision)
    router.add_get("/" + ENTRIES_PATH + _ENTRY + "/history", history)
    # Exports of an entry, a collection's page and search results: CSV indicators, STIX 2.1 bundles.
    router.add_get("/" + ENTRIES_PATH + _ENTRY + "/" + downloads.FORMAT, downloads.of_entry)
    router.add_get("/" + FEEDS_PATH + "{restriction}/" + downloads.FORMAT, downloads.of_collection)
    router.add_get("/" + SEARCH_PATH + "/" + downloads.FORMAT, downloads.of_search)
    taxiiroutes.add_routes(router)  # TAXII 2.1, read-only, at /taxii2/
    router.add_get("/misp/manifest.json", downloads.misp_manifest)
    router.add_get("/misp/hashes.csv", downloads.misp_hashes)
    router.add_get("/misp/{uuid:[0-9a-fA-F-]{36}}.json", downloads.misp_event)
    router.add_get("/" + SEARCH_DESCRIPTION_PATH, search_description)
    router.add_get("/" + SEARCH_PATH, search)
    router.add_get("/" + LOGIN_PATH, login)
    router.add_get("/healthz", healthz)
    router.add_get("/metrics", metrics_for_operators)
    router.add_get("/dashboard", operators_dashboard)
    return app


def _viewer(request: web.Request) -> html.Viewer:
    return html.Viewer(principal(request).name)


def _writable(request: web.Request) -> frozenset[str]:
    return principal(request).write.restrictions() if write.PUBLISHER in request.app else frozenset()


async def root(request: web.Request) -> web.Response:
    raise web.HTTPMethodNotAllowed(request.method, [])


async def login(request: web.Request) -> web.Response:
    if principal(request).anonymous:
        raise unauthorized("sign in to see the collections you may read")
    raise web.HTTPSeeOther(request.app[URLS].service_document())


# -- discovery -----------------------------------------------------------------------------------------


async def service_document(request: web.Request) -> web.Response:
    urls, readable = request.app[URLS], principal(request).read.restrictions()
    if wants_html(request):
        body = html.service_page(urls, _viewer(request), readable, _writable(request))
        return respond(request, body, "text/html; charset=utf-8")
    body = atom.service_document(urls, readable, _writable(request))
    return respond(request, body, atom.SERVICE_MEDIA_TYPE + ";charset=utf-8")


async def category_document(request: web.Request) -> web.Response:
    body = atom.category_document(principal(request).read.restrictions())
    return respond(request, body, atom.CATEGORIES_MEDIA_TYPE + ";charset=utf-8")


async def search_description(request: web.Request) -> web.Response:
    body = opensearch.description_document(request.app[URLS])
    return respond(request, body, atom.OPENSEARCH_MEDIA_TYPE + ";charset=utf-8")


# -- feeds ---------------------------------------------------------------------------------------------


def _feed_response(request: web.Request, view: atom.FeedView, *, max_age: int = 0,
                   form: bool = False) -> web.Response:
    urls = request.app[URLS]
    if wants_html(request):
        search_form = None
        if form:
            readable = principal(request).read.restrictions()
            search_form = html.search_form(urls, _criteria(request), readable)
        body = html.feed_page(view, urls, _viewer(request), form=search_form)
        return respond(request, body, "text/html; charset=utf-8", last_modified=view.updated, max_age=max_age)
    body = atom.feed_document(view, urls, author=request.app[SETTINGS].author)
    return respond(request, body, atom.FEED_MEDIA_TYPE + ";charset=utf-8", last_modified=view.updated,
                   max_age=max_age)


async def feed(request: web.Request) -> web.Response:
    """One page of a collection's current state (RFC 5005 §3 paging by change sequence number)."""
    store, urls, settings = request.app[STORE], request.app[URLS], request.app[SETTINGS]
    restriction, purposes, (count, before, after), changes = collection_page(request)

    size = None if count == settings.page_size else count  # keep the client's page size in every link
    links = [atom.Link("first", urls.feed(restriction, count=size))]
    if changes:
        top, bottom = changes[0].seq, changes[-1].seq
        if store.has_current(restriction, purposes, above=top):
            links.append(atom.Link("previous", urls.feed(restriction, after=top, count=size)))
        if store.has_current(restriction, purposes, below=bottom):
            links.append(atom.Link("next", urls.feed(restriction, before=bottom, count=size)))
    links.append(atom.Link("last", urls.feed(restriction, after=0, count=size)))
    if before is None and after is None:  # the subscription document: RFC 5005 §4 archives behind it
        closed = store.last_seq(restriction) // settings.archive_size
        if closed:
            links.append(atom.Link("prev-archive", urls.archive(restriction, closed)))

    first_page = before is None and after is None
    newest = changes if first_page else store.current_page(restriction, purposes, limit=1)
    view = atom.FeedView(
        atom_id=atom.feed_atom_id(urls, restriction),
        title=f"Incidents ({restriction})",
        self_url=urls.feed(restriction, before=before, after=after, count=size),
        # RFC 8322 §6.1.3: the newest change in the collection; an empty one was never changed
        updated=newest[0].entry.updated_at if newest else NEVER,
        entries=[change.entry for change in changes],
        links=links,
        restriction=restriction,
    )
    return _feed_response(request, view)


async def archive(request: web.Request) -> web.Response:
    """RFC 5005 §4 archive document: a fixed range of change sequence numbers, complete once the
    collection has gone past it, and from then on the same bytes for the same reader forever."""
    restriction = readable_collection(request)
    store, urls, size = request.app[STORE], request.app[URLS], request.app[SETTINGS].archive_size
    number = int(request.match_info["number"][:18])
    if not 1 <= number <= store.last_seq(restriction) // size:
        raise web.HTTPNotFound(text="no such archive (yet): archives close when full\n")
    changes = store.archive(restriction, None, (number - 1) * size + 1, number * size)
    purposes = principal(request).read.purposes(restriction)
    visible = [c.entry for c in changes if purposes is None or _purpose(c.entry) in purposes]
    links = [atom.Link("current", urls.feed(restriction))]
    if number > 1:
        links.append(atom.Link("prev-archive", urls.archive(restriction, number - 1)))
    # No next-archive (RFC 5005 §4 allows it): it would change an archive's bytes when the next one
    # closes, and an archive never changes.
    view = atom.FeedView(
        atom_id=atom.feed_atom_id(urls, restriction),
        title=f"Incidents ({restriction}), archive {number}",
        self_url=urls.archive(restriction, number),
        updated=changes[0].entry.updated_at,  # the range is full, so this never changes either
        entries=visible,
        links=links,
        restriction=restriction,
        archive=True,
    )
    return _feed_response(request, view, max_age=86400)


def _purpose(entry: Entry) -> str:
    return canonical_purpose(entry.incident.purpose)


# -- entries -------------------------------------------------------------------------------------------


async def entry(request: web.Request) -> web.Response:
    found = readable_entry(request)
    urls = request.app[URLS]
    if wants_html(request):
        writable = found.origin == "local" and principal(request).may_write(found.restriction,
                                                                            _purpose(found))
        body = html.entry_page(found, urls, _viewer(request), writable=writable)
        return respond(request, body, "text/html; charset=utf-8", last_modified=found.updated_at)
    return respond(request, atom.entry_document(found, urls), atom.ENTRY_MEDIA_TYPE + ";charset=utf-8",
                   last_modified=found.updated_at)


async def iodef(request: web.Request) -> web.Response:
    """The signed document exactly as stored; no charset parameter, since its own XML declaration rules."""
    found = readable_entry(request)
    return respond(request, found.xml, atom.IODEF_MEDIA_TYPE, last_modified=found.updated_at)


async def revision(request: web.Request) -> web.Response:
    """One version: readable only if both the entry and that version are, so a version written for a
    narrower audience never leaks through an entry that is wider now (or the other way round)."""
    found = readable_entry(request)
    number = int(request.match_info["number"][:18])
    versions = request.app[STORE].revisions(found.id)
    version = next((r.entry for r in versions if r.entry.revision == number), None)
    if version is None or not may_read(request, version):
        raise web.HTTPNotFound()
    # A revision never changes: cache it for a day.
    return respond(request, version.xml, atom.IODEF_MEDIA_TYPE, last_modified=version.updated_at,
                   max_age=86400)


async def history(request: web.Request) -> web.Response:
    """Every version of the entry, newest first, as a complete feed (RFC 5005 §2)."""
    found = readable_entry(request)
    urls = request.app[URLS]
    versions = [r.entry for r in request.app[STORE].revisions(found.id) if may_read(request, r.entry)]
    view = atom.FeedView(
        atom_id=atom.url_atom_id(urls.history(found.id)),
        title=f"History of {atom.entry_title(found.incident)}",
        self_url=urls.history(found.id),
        updated=found.updated_at,
        entries=versions,
        # A complete feed is all there is (RFC 5005 §2): no "current" (that would have to be this very
        # feed), so the entry it is the history of is linked as "related" (RFC 4287 §4.2.7.2), typed
        # as the entry it is.
        links=[atom.Link("related", urls.entry(found.id), atom.ENTRY_MEDIA_TYPE, "Current version")],
        complete=True,
    )
    return _feed_response(request, view)


# -- search --------------------------------------------------------------------------------------------


def _criteria(request: web.Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query.items() if k in opensearch.QUERY_NAMES]


async def search(request: web.Request) -> web.Response:
    settings, store, urls = request.app[SETTINGS], request.app[STORE], request.app[URLS]
    wanted, found = search_results(request)
    readable = principal(request).read.readable()
    total = store.count_matches(wanted.query, readable, cap=SEARCH_COUNT_CAP)
    known = total if total <= SEARCH_COUNT_CAP else None
    size = [] if wanted.count == settings.page_size else [("count", wanted.count)]

    def page(number: int) -> str:
        return urls.search([*wanted.criteria, *size, *([("startPage", number)] if number > 1 else [])])

    links = [atom.Link("first", page(1))]
    if wanted.start_page > 1:
        links.append(atom.Link("previous", page(wanted.start_page - 1)))
    if wanted.offset + len(found) < total:
        links.append(atom.Link("next", page(wanted.start_page + 1)))
    if known is not None:
        links.append(atom.Link("last", page(max(1, -(-known // wanted.count)))))
    view = atom.FeedView(
        atom_id=atom.url_atom_id(urls.search(wanted.criteria)),
        title="Search results",
        self_url=page(wanted.start_page),
        updated=max((e.updated_at for e in found), default=NEVER),
        entries=found,
        links=links,
        search=atom.SearchInfo(known, wanted.offset + 1, wanted.count),
    )
    return _feed_response(request, view, form=True)


# -- operations ----------------------------------------------------------------------------------------


def store_health(store: FeedStore) -> dict[str, object]:
    """The store's part of the detailed health: how many entries it mirrors, how many it refused."""
    return {"status": "ok", "entries": store.count_entries(), "rejects": store.count_rejects()}


async def operators_dashboard(request: web.Request) -> web.Response:
    """The consortium's traffic as charts (feed/dashboard.py), for operator users only: it counts private
    entries and names every peer. Anonymous readers are asked to sign in, as for a collection they may
    not read; a user who is no operator gets 404, as for anything they may not see."""
    who = principal(request)
    if who.anonymous:
        raise unauthorized()
    if not who.operator:
        raise web.HTTPNotFound()
    store, now = request.app[STORE], datetime.now(UTC)
    since = (now - timedelta(days=dashboard.DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    body = dashboard.render(store.activity(since), store.peers(), request.app[URLS], _viewer(request), now)
    return respond(request, body, "text/html; charset=utf-8")


async def healthz(request: web.Request) -> web.Response:
    """Up, and nothing more, unless an operator asks: the detail names peers and counts private items."""
    body = dict(request.app[HEALTH]()) if principal(request).operator else {"status": "up"}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def metrics_for_operators(request: web.Request) -> web.Response:
    """404 to anyone but an operator, as for any other thing a reader may not see."""
    exposition = request.app.get(METRICS)
    if exposition is None or not principal(request).operator:
        raise web.HTTPNotFound()
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
