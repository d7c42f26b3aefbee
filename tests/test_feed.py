"""The ROLIE feed over HTTP, in process: discovery, feeds, paging, archives, entries, history, conditional
GET and the HTML views, checked against the Atom / AtomPub RELAX NG schemas and feedparser."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

import feedparser
import pytest
from aiohttp.test_utils import TestClient
from lxml import etree

from tests.test_feed_support import (
    ANALYST,
    APP,
    ATOM,
    BASE,
    INFO_TYPE_SCHEME,
    NS,
    PURPOSE_SCHEME,
    RESTRICTION_SCHEME,
    SERVICE,
    AtomSchemas,
    categories,
    client_for,
    iodef2,
    link,
    path_of,
    settings,
    store_document,
    utc,
)
from xmppbridge.feed.atom import rfc3339
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS
from xmppbridge.store import Entry, Store

PER_RESTRICTION = 3
EXTRA_PUBLIC = 8  # public gets 11 entries: several pages at count 4
ARCHIVE_SIZE = 4
AUTH = ANALYST.headers  # reads everything


@dataclass
class Filled:
    store: Store
    ids: dict[str, list[int]]  # restriction -> entry ids, oldest first


@pytest.fixture
def filled(store_target: str) -> Store:
    with Store(store_target) as store:
        ids: dict[str, list[int]] = {r: [] for r in RESTRICTIONS}
        n = 0
        for restriction in RESTRICTIONS:
            for _ in range(PER_RESTRICTION + (EXTRA_PUBLIC if restriction == "public" else 0)):
                n += 1
                xml = iodef2(
                    f"2024-{n:04d}",
                    restriction=restriction,
                    purpose=PURPOSES[n % 5],
                    description=f"Incident number {n}",
                    report=f"2024-05-{n:02d}T12:00:00Z",
                    related="2023-0099" if n == 2 else None,
                )
                ids[restriction].append(
                    store_document(store, xml, origin="local" if n % 3 == 0 else "remote").id
                )
        yield Filled(store, ids)


@pytest.fixture
async def client(filled: Filled) -> AsyncIterator[TestClient]:
    client = await client_for(filled.store, archive_size=ARCHIVE_SIZE)
    yield client
    await client.close()


async def get_ok(client: TestClient, url_or_path: str, media_type: str, **headers: str) -> bytes:
    path = path_of(url_or_path) if url_or_path.startswith("http") else url_or_path
    response = await client.get(path, headers={**AUTH, **headers})
    assert response.status == 200, (path, response.status, await response.text())
    assert response.headers["Content-Type"].split(";")[0] == media_type
    return await response.read()


def entries_of(doc: etree._Element) -> list[str]:
    return [link(e, "self") for e in doc.findall("atom:entry", NS)]


# -- discovery -----------------------------------------------------------------------------------------


async def test_service_document_for_anonymous_lists_only_public(
    client: TestClient, schemas: AtomSchemas
) -> None:
    response = await client.get("/.well-known/rolie/servicedocument")
    assert response.status == 200 and response.headers["Content-Type"].startswith("application/atomsvc+xml")
    body = await response.read()
    doc = schemas.check_service(body)
    assert [w.findtext("atom:title", namespaces=NS) for w in doc.findall("app:workspace", NS)] == ["Public"]
    [collection] = doc.findall(".//app:collection", NS)
    assert collection.get("href") == BASE + "feeds/public"
    assert b"partner" not in body and b"need-to-know" not in body and b"private" not in body


async def test_service_document_for_an_analyst(client: TestClient, schemas: AtomSchemas) -> None:
    doc = schemas.check_service(
        await get_ok(client, "/.well-known/rolie/servicedocument", "application/atomsvc+xml")
    )
    layout = {
        w.findtext("atom:title", namespaces=NS): [c.get("href") for c in w.findall("app:collection", NS)]
        for w in doc.findall("app:workspace", NS)
    }
    assert layout == {
        "Public": [BASE + "feeds/public"],
        "Consortium": [BASE + f"feeds/{r}" for r in ("partner", "need-to-know", "private", "default")],
    }
    for collection in doc.iter(f"{{{APP}}}collection"):
        restriction = collection.get("href").rsplit("/", 1)[1]
        assert collection.findtext("atom:title", namespaces=NS) == f"Incidents ({restriction})"
        accept = collection.find("app:accept", NS)
        assert accept is not None and not (accept.text or "").strip()  # no publisher: read-only
        [cats] = collection.findall("app:categories", NS)
        assert cats.get("fixed") == "yes"
        found = categories(cats)
        assert [t for s, t in found if s == INFO_TYPE_SCHEME] == ["incident"]  # exactly one (RFC 8322 §5.1.2)
        assert {t for s, t in found if s == RESTRICTION_SCHEME} == {restriction}
        assert {t for s, t in found if s == PURPOSE_SCHEME} == set(PURPOSES)
        formats = {(f.get("ns"), f.get("version")) for f in collection.findall("rolie:format", NS)}
        assert formats == {
            ("urn:ietf:params:xml:ns:iodef-1.0", "1.0"),
            ("urn:ietf:params:xml:ns:iodef-2.0", "2.0"),
        }
        assert link(collection, "search") == BASE + "search/description"
        await get_ok(client, collection.get("href"), "application/atom+xml")


async def test_category_document(client: TestClient, schemas: AtomSchemas) -> None:
    doc = schemas.check_categories(
        await get_ok(client, "/.well-known/rolie/categorydocument", "application/atomcat+xml")
    )
    assert doc.get("fixed") == "yes"
    found = categories(doc)
    assert {t for s, t in found if s == RESTRICTION_SCHEME} == set(RESTRICTIONS)
    assert {t for s, t in found if s == PURPOSE_SCHEME} == set(PURPOSES)
    assert (INFO_TYPE_SCHEME, "incident") in found
    anonymous = schemas.check_categories(
        await (await client.get("/.well-known/rolie/categorydocument")).read()
    )
    assert {t for s, t in categories(anonymous) if s == RESTRICTION_SCHEME} == {"public"}


# -- feeds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("restriction", RESTRICTIONS)
async def test_each_feed_validates_and_parses(
    client: TestClient, filled: Filled, schemas: AtomSchemas, restriction: str
) -> None:
    response = await client.get(f"/feeds/{restriction}", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/atom+xml;type=feed;charset=utf-8"
    body = await response.read()
    doc = schemas.check_atom(body)
    assert (
        doc.findtext("atom:id", namespaces=NS)
        == uuid.uuid5(uuid.NAMESPACE_URL, f"{BASE}feeds/{restriction}").urn
    )
    assert doc.findtext("atom:title", namespaces=NS) == f"Incidents ({restriction})"
    assert categories(doc) == {(INFO_TYPE_SCHEME, "incident"), (RESTRICTION_SCHEME, restriction)}
    assert link(doc, "self") == f"{BASE}feeds/{restriction}"
    assert link(doc, "service") == f"{BASE}.well-known/rolie/servicedocument"
    assert link(doc, "search") == f"{BASE}search/description"
    assert link(doc, "first") == f"{BASE}feeds/{restriction}"
    assert link(doc, "last") == f"{BASE}feeds/{restriction}?after=0"
    # newest change first
    assert entries_of(doc) == [f"{BASE}entries/{i}" for i in reversed(filled.ids[restriction])]
    updated = [utc(e.findtext("atom:updated", namespaces=NS)) for e in doc.findall("atom:entry", NS)]
    assert updated == sorted(updated, reverse=True)  # as times: "…00.5Z" sorts after "…00.51Z" as text
    assert utc(doc.findtext("atom:updated", namespaces=NS)) == updated[0]

    parsed = feedparser.parse(body, response_headers={"content-type": response.headers["Content-Type"]})
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert all(e.summary and e.title and e.author == "csirt.example.org" for e in parsed.entries)


async def test_feed_entries_are_complete_rolie_entries(client: TestClient, filled: Filled) -> None:
    doc = etree.fromstring(await get_ok(client, "/feeds/partner", "application/atom+xml"))
    for element in doc.findall("atom:entry", NS):
        entry_id = int(link(element, "self").rsplit("/", 1)[1])
        stored = filled.store.entry(entry_id)
        assert stored is not None
        assert (
            element.findtext("atom:id", namespaces=NS) == f"tag:csirt.example.org,2024:{stored.incident.id}"
        )
        assert utc(element.findtext("atom:published", namespaces=NS)) == stored.incident.published_time
        assert element.findtext("atom:title", namespaces=NS) == stored.incident.title
        assert "signed by CN=csirt.example.org,O=Example" in element.findtext("atom:summary", namespaces=NS)
        assert categories(element) == {
            (INFO_TYPE_SCHEME, "incident"),
            (RESTRICTION_SCHEME, "partner"),
            (PURPOSE_SCHEME, stored.incident.purpose),
        }
        assert link(element, "collection") == f"{BASE}feeds/partner"
        assert link(element, "version-history") == f"{BASE}entries/{entry_id}/history"
        assert (link(element, "edit") is not None) == (stored.origin == "local")
        content = element.find("atom:content", NS)
        assert content.get("type") == "application/xml" and len(content) == 0
        assert content.get("src") == f"{BASE}entries/{entry_id}/revisions/1/iodef.xml"
        assert element.find("rolie:format", NS).get("ns") == "urn:ietf:params:xml:ns:iodef-2.0"
        props = {p.get("name"): p.get("value") for p in element.findall("rolie:property", NS)}
        assert props["urn:ietf:params:rolie:property:content-id"] == stored.incident.id
        assert props["urn:xmppbridge:property:source"] == (
            f"xmpp:{SERVICE}?;node={stored.node};item={quote(stored.item_id, safe='')}"
        )


async def test_related_activity_links_to_a_search(client: TestClient, filled: Filled) -> None:
    doc = etree.fromstring(
        await get_ok(client, f"/entries/{filled.ids['public'][1]}", "application/atom+xml")
    )
    assert link(doc, "related") == f"{BASE}search?incident=2023-0099"


async def walk(
    client: TestClient, url: str | None, rel: str, schemas: AtomSchemas
) -> tuple[list[str], list[str]]:
    seen: list[str] = []
    pages: list[str] = []
    while url is not None:
        body = await get_ok(client, url, "application/atom+xml")
        doc = schemas.check_atom(body)
        assert feedparser.parse(body).bozo == 0
        assert link(doc, "self") == url
        assert link(doc, "prev") is None  # we emit RFC 5005's "previous"
        pages.append(url)
        seen += entries_of(doc)
        url = link(doc, rel)
        assert len(pages) < 50
    return seen, pages


async def test_paging_walk_visits_every_entry_once(
    client: TestClient, filled: Filled, schemas: AtomSchemas
) -> None:
    expected = sorted(f"{BASE}entries/{i}" for i in filled.ids["public"])
    seen, pages = await walk(client, f"{BASE}feeds/public?count=4", "next", schemas)
    assert len(pages) == 3 and len(seen) == len(set(seen)) and sorted(seen) == expected
    # and backwards from the last page
    back, back_pages = await walk(client, f"{BASE}feeds/public?after=0&count=4", "previous", schemas)
    assert len(back) == len(set(back)) and sorted(back) == expected
    assert back_pages[-1] != back_pages[0]


async def test_page_links_keep_the_count(client: TestClient) -> None:
    doc = etree.fromstring(await get_ok(client, "/feeds/public?count=4", "application/atom+xml"))
    assert link(doc, "first") == f"{BASE}feeds/public?count=4"
    assert link(doc, "last") == f"{BASE}feeds/public?after=0&count=4"
    assert link(doc, "next").endswith("&count=4") and link(doc, "previous") is None
    assert len(doc.findall("atom:entry", NS)) == 4


@pytest.mark.parametrize(
    "query", ["count=0", "count=501", "count=x", "before=-1", "after=1.5", "before=1&after=2", "before=٣"]
)
async def test_bad_paging_parameters(client: TestClient, query: str) -> None:
    assert (await client.get(f"/feeds/public?{query}", headers=AUTH)).status == 400


async def test_empty_feed_is_valid(tmp_path: Path, schemas: AtomSchemas) -> None:
    with Store(tmp_path / "empty.sqlite") as store:
        client = await client_for(store)
        try:
            body = await get_ok(client, "/feeds/public", "application/atom+xml")
            doc = schemas.check_atom(body)
            assert doc.findall("atom:entry", NS) == []
            assert (
                link(doc, "next") is None
                and link(doc, "previous") is None
                and link(doc, "prev-archive") is None
            )
            assert feedparser.parse(body).bozo == 0
        finally:
            await client.close()


# -- archives ------------------------------------------------------------------------------------------


async def test_archives_are_complete_and_never_change(
    client: TestClient, filled: Filled, schemas: AtomSchemas
) -> None:
    current = schemas.check_atom(await get_ok(client, "/feeds/public", "application/atom+xml"))
    newest = link(current, "prev-archive")
    assert newest == f"{BASE}feeds/public/archive/2"  # 11 changes, 4 per archive: 2 closed
    snapshots: dict[str, bytes] = {}
    changes: list[str] = []
    url: str | None = newest
    while url is not None:
        body = await get_ok(client, url, "application/atom+xml")
        doc = schemas.check_atom(body)
        assert feedparser.parse(body).bozo == 0
        assert doc.find("fh:archive", NS) is not None
        assert link(doc, "current") == f"{BASE}feeds/public"
        assert doc.findtext("atom:id", namespaces=NS) == current.findtext("atom:id", namespaces=NS)
        snapshots[url] = body
        changes += entries_of(doc)
        url = link(doc, "prev-archive")
    assert list(snapshots) == [f"{BASE}feeds/public/archive/2", f"{BASE}feeds/public/archive/1"]
    assert sorted(changes) == sorted(f"{BASE}entries/{i}" for i in filled.ids["public"][:8])
    assert (await client.get("/feeds/public/archive/3", headers=AUTH)).status == 404  # still open
    assert (await client.get("/feeds/public/archive/0", headers=AUTH)).status == 404

    # Changes later on: new versions, deletions. Closed archives keep their bytes; the third closes.
    first = filled.store.entry(filled.ids["public"][0])
    store_document(filled.store, iodef2("2024-0001", description="Revised"), origin=first.origin)
    filled.store.mark_deleted(first.service, first.node, first.item_id)
    store_document(filled.store, iodef2("2024-0900", description="new"))
    for archive_url, body in snapshots.items():
        assert await get_ok(client, archive_url, "application/atom+xml") == body
    third = schemas.check_atom(await get_ok(client, "/feeds/public/archive/3", "application/atom+xml"))
    assert link(third, "prev-archive") == f"{BASE}feeds/public/archive/2"
    assert len(third.findall("atom:entry", NS)) + len(third.findall("at:deleted-entry", NS)) == ARCHIVE_SIZE
    response = await client.get("/feeds/public/archive/1", headers=AUTH)
    assert "max-age" in response.headers["Cache-Control"]


# -- entries, versions, deletion -----------------------------------------------------------------------


async def test_each_entry_validates_standalone(
    client: TestClient, filled: Filled, schemas: AtomSchemas
) -> None:
    for restriction, ids in filled.ids.items():
        for entry_id in ids:
            response = await client.get(f"/entries/{entry_id}", headers=AUTH)
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/atom+xml;type=entry;charset=utf-8"
            doc = schemas.check_atom(await response.read())
            assert doc.tag == f"{{{ATOM}}}entry"
            assert link(doc, "self") == f"{BASE}entries/{entry_id}"
            assert link(doc, "collection") == f"{BASE}feeds/{restriction}"  # RFC 8322 §6.2.5


async def test_iodef_documents_are_returned_as_stored(client: TestClient, filled: Filled) -> None:
    for entry_id in filled.ids["need-to-know"]:
        stored = filled.store.entry(entry_id)
        doc = etree.fromstring(await get_ok(client, f"/entries/{entry_id}", "application/atom+xml"))
        src = doc.find("atom:content", NS).get("src")
        assert await get_ok(client, src, "application/xml") == stored.xml
        response = await client.get(f"/entries/{entry_id}/iodef.xml", headers=AUTH)
        assert response.headers["Content-Type"] == "application/xml"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert await response.read() == stored.xml


async def test_new_versions_keep_history(client: TestClient, filled: Filled, schemas: AtomSchemas) -> None:
    entry_id = filled.ids["partner"][0]
    old = filled.store.entry(entry_id)
    store_document(
        filled.store,
        iodef2(
            old.incident.id, restriction="partner", purpose=old.incident.purpose, description="Second look"
        ),
        origin=old.origin,
    )
    doc = etree.fromstring(await get_ok(client, f"/entries/{entry_id}", "application/atom+xml"))
    assert doc.find("atom:content", NS).get("src") == f"{BASE}entries/{entry_id}/revisions/2/iodef.xml"
    assert doc.findtext("atom:title", namespaces=NS) == "Second look"
    assert doc.findtext("atom:published", namespaces=NS) == rfc3339(old.published_at)  # fixed

    history = schemas.check_atom(await get_ok(client, link(doc, "version-history"), "application/atom+xml"))
    assert history.find("fh:complete", NS) is not None
    versions = history.findall("atom:entry", NS)
    assert [v.findtext("atom:title", namespaces=NS) for v in versions] == ["Second look", old.incident.title]
    assert len({v.findtext("atom:id", namespaces=NS) for v in versions}) == 1  # one entry, two versions
    srcs = [v.find("atom:content", NS).get("src") for v in versions]
    assert await get_ok(client, srcs[1], "application/xml") == old.xml
    assert await get_ok(client, srcs[0], "application/xml") == filled.store.entry(entry_id).xml
    assert (await client.get(f"/entries/{entry_id}/revisions/3/iodef.xml", headers=AUTH)).status == 404


async def test_deleted_entries_become_tombstones(
    client: TestClient, filled: Filled, schemas: AtomSchemas
) -> None:
    entry_id = filled.ids["public"][-1]
    entry: Entry = filled.store.entry(entry_id)
    assert filled.store.mark_deleted(entry.service, entry.node, entry.item_id)
    for path in (f"/entries/{entry_id}", f"/entries/{entry_id}/iodef.xml", f"/entries/{entry_id}/history"):
        assert (await client.get(path, headers=AUTH)).status == 410, path
    assert (await client.get(f"/entries/{entry_id}")).status == 410  # public: anonymous readers may know
    doc = schemas.check_atom(await get_ok(client, "/feeds/public", "application/atom+xml"))
    assert f"{BASE}entries/{entry_id}" not in entries_of(doc)
    [tombstone] = doc.findall("at:deleted-entry", NS)
    assert tombstone.get("ref") == f"tag:csirt.example.org,2024:{entry.incident.id}"
    assert feedparser.parse(etree.tostring(doc)).bozo == 0


# -- conditional GET and negotiation -------------------------------------------------------------------


@pytest.mark.parametrize("which", ["feed", "entry"])
async def test_conditional_get(client: TestClient, filled: Filled, which: str) -> None:
    entry_id = filled.ids["public"][0]
    path = "/feeds/public" if which == "feed" else f"/entries/{entry_id}"
    first = await client.get(path, headers=AUTH)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and first.headers["Vary"] == "Accept, Authorization"
    assert (await client.get(path, headers={**AUTH, "If-None-Match": etag})).status == 304
    assert (await client.get(path, headers={**AUTH, "If-None-Match": f'"x", W/{etag}'})).status == 304
    assert (await client.get(path, headers={**AUTH, "If-Modified-Since": modified})).status == 304
    assert (await client.get(path, headers={**AUTH, "If-None-Match": '"other"'})).status == 200
    # a change makes both validators stale
    entry = filled.store.entry(entry_id)
    store_document(
        filled.store,
        iodef2(entry.incident.id, purpose=entry.incident.purpose, description="New"),
        origin=entry.origin,
    )
    again = await client.get(path, headers={**AUTH, "If-None-Match": etag})
    assert again.status == 200 and again.headers["ETag"] != etag
    past = format_datetime(utc("2020-01-01T00:00:00Z"), usegmt=True)
    assert (await client.get(path, headers={**AUTH, "If-Modified-Since": past})).status == 200


async def test_browsers_get_html(client: TestClient, filled: Filled) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    for path in (
        "/.well-known/rolie/servicedocument",
        "/feeds/public",
        f"/entries/{filled.ids['public'][0]}",
        f"/entries/{filled.ids['public'][0]}/history",
        "/search?q=incident",
        "/feeds/public/archive/1",
    ):
        response = await client.get(path, headers={**AUTH, **browser})
        assert response.status == 200, path
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert (
            "script-src" not in response.headers["Content-Security-Policy"]
        )  # default-src 'none' forbids it
        assert (await response.text()).startswith("<!DOCTYPE html>")
    for accept in ("*/*", "application/atom+xml", "text/html;q=0.5, application/atom+xml"):
        response = await client.get("/feeds/public", headers={**AUTH, "Accept": accept})
        assert response.headers["Content-Type"].startswith("application/atom+xml"), accept


async def test_html_escapes_untrusted_text(filled: Filled) -> None:
    evil = iodef2(
        "EVIL-1",
        description='<script>alert(1)</script> "quoted" &amp; <b>bold</b>'.replace("<", "&lt;").replace(
            ">", "&gt;"
        ),
    )
    entry = store_document(filled.store, evil)
    client = await client_for(filled.store)
    try:
        response = await client.get(f"/entries/{entry.id}", headers={"Accept": "text/html"})
        text = await response.text()
        assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "<b>bold" not in text
        feed = await (await client.get("/feeds/public", headers={"Accept": "text/html"})).text()
        assert "<script>" not in feed
    finally:
        await client.close()


# -- odds and ends -------------------------------------------------------------------------------------


async def test_root_is_405(client: TestClient) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = await client.request(method, "/")
        assert response.status == 405, method
        assert "Allow" in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/nothing",
        "/feeds/bogus",
        "/feeds/",
        "/feeds/white",
        "/entries/999999",
        "/entries/abc",
        "/entries/99999999999999999999999",
        "/entries/1/other.xml",
        "/.well-known/rolie/other",
        "/feeds/public/archive/x",
    ],
)
async def test_unknown_is_404(client: TestClient, path: str) -> None:
    assert (await client.get(path, headers=AUTH)).status == 404


async def test_read_only_without_a_publisher(client: TestClient, filled: Filled) -> None:
    assert (await client.post("/feeds/public", data=b"<x/>", headers=AUTH)).status == 405
    assert (await client.put(f"/entries/{filled.ids['public'][0]}", data=b"<x/>", headers=AUTH)).status == 405


async def test_healthz_says_only_up_to_readers(filled: Filled) -> None:
    """The detail is for operators (tests/test_feed_doors.py); a reader, even one who may read
    everything, learns that the service is up."""
    client = await client_for(filled.store, health={"ready": True, "outbox": 0})
    try:
        for headers in ({}, AUTH):
            response = await client.get("/healthz", headers=headers)
            assert response.status == 200 and await response.json() == {"status": "up"}
    finally:
        await client.close()


def test_settings_validation() -> None:
    assert settings().anonymous_restrictions == frozenset({"public"})
    assert settings(anonymous_restrictions=["public", "partner"]).anonymous_restrictions == {
        "public",
        "partner",
    }
    for bad in (
        {"anonymous_restrictions": frozenset({"amber"})},
        {"page_size": 0},
        {"page_size": 600},
        {"base_url": "feeds.example.org"},
        {"archive_size": 0},
    ):
        with pytest.raises(ValueError):
            settings(**bad)
    with pytest.raises(ValueError, match="name"):
        settings(users=(ANALYST.user(), ANALYST.user()))
