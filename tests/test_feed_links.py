"""Every link the feed serves says truly what it points to.

A crawl starts from the two ROLIE well-known documents (RFC 8322 §6.3), the HTML service page and the
OpenSearch description, follows every atom:link, app:collection, atom:content, OpenSearch Url and HTML
link, fetches each with its declared type as Accept, and compares the served Content-Type with the
link's ``type`` (RFC 4287 §4.2.7.3). It checks the rules the W3C Feed Validation Service checks on top:
one self link naming the document itself, no paging or foreign current link in a complete feed
(RFC 5005 §2), and archives whose one current link leads to the subscription feed (RFC 5005 §4)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import lxml.html
import pytest
from aiohttp.test_utils import TestClient
from lxml import etree

from tests.test_feed_support import ANALYST, BASE, NS, OS, client_for, iodef2, path_of, store_document
from xmppbridge.store import Store

HTML = "text/html"
ATOM_FEED = "application/atom+xml;type=feed"
NOT_IN_COMPLETE_FEED = ("next", "previous", "prev", "first", "last", "prev-archive", "next-archive")


@dataclass(frozen=True)
class Target:
    href: str
    declared: str | None
    rel: str
    source: str


@dataclass(frozen=True)
class Served:
    url: str
    media_type: str
    body: bytes


def media_type(value: str) -> tuple[str, dict[str, str]]:
    main, *params = (p.strip() for p in value.split(";"))
    pairs = (p.partition("=") for p in params if p)
    return main.lower(), {k.strip().lower(): v.strip().strip('"').lower() for k, _, v in pairs
                          if k.strip().lower() != "charset"}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "feed.sqlite") as store:
        for n in range(1, 5):
            store_document(store, iodef2(f"2024-{n:04d}", description=f"Incident {n}",
                                         related="2023-0099" if n == 2 else None),
                           origin="local" if n == 3 else "remote")
        store_document(store, iodef2("2024-0001", description="Incident 1, second look"))
        store_document(store, iodef2("2024-0100", restriction="partner", purpose="reporting"))
        yield store


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient]:
    client = await client_for(store, archive_size=2)
    yield client
    await client.close()


class Crawl:
    """Breadth first over our own documents; each (URL, Accept) is fetched and read once."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.served: dict[tuple[str, str | None], Served] = {}
        self.problems: list[str] = []
        self.rels: set[str] = set()
        self.parsed: set[tuple[str, str | None]] = set()

    async def fetch(self, url: str, accept: str | None) -> Served | None:
        key = (url, accept)
        if key not in self.served:
            headers = {**ANALYST.headers, "Accept": accept or HTML}
            response = await self.client.get(path_of(url), headers=headers, allow_redirects=False)
            if response.status != 200:
                self.problems.append(f"{url} (Accept {accept}): status {response.status}")
                return None
            self.served[key] = Served(url, response.headers["Content-Type"], await response.read())
        return self.served[key]

    async def run(self, starts: list[Target]) -> None:
        queue = deque(starts)
        while queue:
            target = queue.popleft()
            self.rels.add(target.rel)
            if not target.href.startswith(BASE):
                self.problems.append(f"{target}: not one of ours")
                continue
            key = (target.href, target.declared)
            served = await self.fetch(target.href, target.declared)
            if served is None:
                continue
            if target.declared is not None and media_type(served.media_type) != media_type(target.declared):
                self.problems.append(f"{target}: served as {served.media_type}")
            if key not in self.parsed:
                self.parsed.add(key)
                queue.extend(await self.links_of(served))

    async def links_of(self, served: Served) -> list[Target]:
        kind, params = media_type(served.media_type)
        if kind == "application/atom+xml":
            return await self.atom_links(served, params.get("type"))
        if kind == "application/atomsvc+xml":
            doc = etree.fromstring(served.body)
            found = [Target(c.get("href"), ATOM_FEED, "collection", served.url)
                     for c in doc.iter("{http://www.w3.org/2007/app}collection")]
            return found + self.typed_links(doc.iter(f"{{{NS['atom']}}}link"), served.url)
        if kind == "application/opensearchdescription+xml":
            doc = etree.fromstring(served.body)
            return [Target(re.sub(r"[^&?]+=\{[^}]*\?\}&?", "", u.get("template")).rstrip("?&"),
                           u.get("type"), u.get("rel"), served.url) for u in doc.iter(f"{{{OS}}}Url")]
        if kind == HTML:
            page = lxml.html.fromstring(served.body)
            typed = self.typed_links(page.iter("link"), served.url)
            untyped = [Target(a.get("href"), None, "a", served.url) for a in page.iter("a")
                       if a.get("href", "").startswith(BASE) and not a.get("href").endswith("/login")]
            return typed + untyped
        return []

    @staticmethod
    def typed_links(elements: object, source: str) -> list[Target]:
        return [Target(e.get("href"), e.get("type"), e.get("rel"), source) for e in elements]  # type: ignore

    async def atom_links(self, served: Served, which: str | None) -> list[Target]:
        doc = etree.fromstring(served.body)
        url = served.url
        own = doc.findall("atom:link", NS)
        selves = [e.get("href") for e in own if e.get("rel") == "self"]
        if selves != [url]:
            self.problems.append(f"{url}: self links {selves}")
        expected = "feed" if doc.tag == f"{{{NS['atom']}}}feed" else "entry"
        if which != expected:
            self.problems.append(f"{url}: an atom:{expected} served as type={which}")
        for e in own:
            if e.get("type") is None:
                self.problems.append(f"{url}: link rel={e.get('rel')} without a type")
        if doc.find("fh:complete", NS) is not None:
            for e in own:
                rel = e.get("rel")
                if rel in NOT_IN_COMPLETE_FEED or (rel == "current" and e.get("href") != url):
                    self.problems.append(f"{url}: complete feed with rel={rel} to {e.get('href')}")
        if doc.find("fh:archive", NS) is not None:
            await self.check_archive(url, own)
        for e in own:
            if e.get("rel") in ("prev-archive", "next-archive"):
                target = await self.fetch(e.get("href"), e.get("type"))
                if target is not None and etree.fromstring(target.body).find("fh:archive", NS) is None:
                    self.problems.append(f"{url}: {e.get('rel')} {e.get('href')} is no archive")
        found = self.typed_links(doc.iter(f"{{{NS['atom']}}}link"), url)
        for content in doc.iter(f"{{{NS['atom']}}}content"):
            found.append(Target(content.get("src"), content.get("type"), "content", url))
        return found

    async def check_archive(self, url: str, links: list[etree._Element]) -> None:
        current = [e for e in links if e.get("rel") == "current"]
        if len(current) != 1:
            self.problems.append(f"{url}: archive with {len(current)} current links")
            return
        subscription = await self.fetch(current[0].get("href"), current[0].get("type"))
        if subscription is None:
            return
        doc = etree.fromstring(subscription.body)
        if doc.find("fh:archive", NS) is not None or doc.find("fh:complete", NS) is not None:
            self.problems.append(f"{url}: current link to {subscription.url}, not a subscription feed")
        elif not any(e.get("rel") == "prev-archive" for e in doc.findall("atom:link", NS)):
            self.problems.append(f"{url}: current feed {subscription.url} does not lead to the archives")


async def test_every_link_is_typed_as_what_it_points_to(client: TestClient) -> None:
    crawl = Crawl(client)
    service = BASE + ".well-known/rolie/servicedocument"
    await crawl.run([
        Target(service, "application/atomsvc+xml", "start", "test"),
        Target(service, HTML, "start", "test"),
        Target(BASE + ".well-known/rolie/categorydocument", "application/atomcat+xml", "start", "test"),
        Target(BASE + "search/description", "application/opensearchdescription+xml", "start", "test"),
    ])
    assert not crawl.problems, "\n".join(crawl.problems)
    paths = {path_of(s.url).split("?")[0] for s in crawl.served.values()}
    assert {"/feeds/public", "/feeds/partner", "/feeds/public/archive/1", "/feeds/public/archive/2",
            "/search", "/search/description", "/entries/1", "/entries/1/history",
            "/entries/1/revisions/1/iodef.xml", "/entries/1/revisions/2/iodef.xml"} <= paths
    assert {"self", "alternate", "collection", "service", "search", "version-history", "related", "edit",
            "first", "last", "current", "prev-archive", "content", "results", "a"} <= crawl.rels
