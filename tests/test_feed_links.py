"""Every link the feed serves says truly what it points to: a crawl from the service document follows
each atom:link, app:collection and atom:content, fetches it, and compares the served Content-Type with
the link's ``type`` (RFC 4287 §4.2.7.3); it also checks self links and the RFC 5005 rules that the W3C
Feed Validation Service checks (a complete feed has no paging or current link, an archive links to its
current feed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.test_feed_support import ANALYST, APP, BASE, NS, client_for, iodef2, path_of, store_document
from xmppbridge.policy import RESTRICTIONS
from xmppbridge.store import Store

XML_TYPES = {"application/atom+xml", "application/atomsvc+xml", "application/atomcat+xml"}
PAGING = {"current", "first", "last", "next", "previous", "prev-archive", "next-archive"}


def _media_type(value: str) -> str:
    """The media type with its parameters but charset, normalised: 'application/atom+xml;type=feed'."""
    kind, *params = [part.strip().lower() for part in value.split(";")]
    return ";".join([kind, *sorted(p.replace(" ", "") for p in params if not p.startswith("charset="))])


def _links(doc: etree._Element) -> Iterator[tuple[str, str, str | None]]:
    """(rel, href, declared type) of every reference in an Atom or AtomPub document."""
    for element in doc.iter(f"{{{NS['atom']}}}link"):
        yield element.get("rel", "alternate"), element.get("href"), element.get("type")
    for element in doc.iter(f"{{{APP}}}collection"):
        yield "collection", element.get("href"), "application/atom+xml;type=feed"
    for element in doc.iter(f"{{{APP}}}categories"):
        if element.get("href"):  # out-of-line categories (RFC 5023 §7.2.1)
            yield "categories", element.get("href"), "application/atomcat+xml"
    for element in doc.iter(f"{{{NS['atom']}}}content"):
        if element.get("src"):
            yield "content", element.get("src"), element.get("type")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "feed.sqlite") as store:
        for n, restriction in enumerate(RESTRICTIONS * 3):  # enough for closed archives of size 2
            store_document(store, iodef2(f"2024-{n:04d}", restriction=restriction), origin="local")
        revised = iodef2("2024-0000", restriction="public", description="Revised")
        store_document(store, revised, origin="local")
        yield store


async def test_every_link_is_typed_as_what_it_points_to(store: Store) -> None:
    client = await client_for(store, archive_size=2)
    # The two documents ROLIE names at well-known URLs (RFC 8322 §6.3); the crawl finds the rest.
    queue = [f"{BASE}.well-known/rolie/servicedocument", f"{BASE}.well-known/rolie/categorydocument"]
    seen: set[str] = set()
    problems: list[str] = []
    kinds: set[str] = set()
    try:
        while queue:
            url = queue.pop()
            if url in seen:
                continue
            seen.add(url)
            response = await client.get(path_of(url), headers=ANALYST.headers)
            assert response.status == 200, url
            served = _media_type(response.headers["Content-Type"])
            if served.split(";")[0] not in XML_TYPES:
                continue
            doc = etree.fromstring(await response.read())
            kinds.add(served)
            for own in doc.findall("atom:link[@rel='self']", NS):  # the document's, not its entries'
                if own.get("href") != url:
                    problems.append(f"{url}: self link {own.get('href')} is another document")
            rels: dict[str, list[str]] = {}
            for rel, href, declared in _links(doc):
                if not href.startswith(BASE) or "{" in href:
                    continue  # not ours, or a search template
                rels.setdefault(rel, []).append(href)
                if declared is None:
                    continue
                target = await client.get(path_of(href), headers={**ANALYST.headers, "Accept": declared})
                got = _media_type(target.headers.get("Content-Type", ""))
                if target.status != 200 or got != _media_type(declared):
                    problems.append(f"{url}: {rel} link to {href} says {declared}, "
                                    f"serves {target.status} {got}")
                if got.split(";")[0] in XML_TYPES:
                    queue.append(href.split("#")[0])
            if doc.find("fh:complete", NS) is not None and PAGING & rels.keys():
                problems.append(f"{url}: a complete feed with {sorted(PAGING & rels.keys())} links")
            if doc.find("fh:archive", NS) is not None and len(rels.get("current", [])) != 1:
                problems.append(f"{url}: an archive without exactly one current link")
    finally:
        await client.close()
    assert problems == []
    # The crawl reached every kind of document, archives and histories among them.
    assert {"application/atomsvc+xml", "application/atomcat+xml", "application/atom+xml;type=entry",
            "application/atom+xml;type=feed"} <= kinds
    assert any("/history" in url for url in seen) and any("/archive" in url for url in seen), sorted(seen)
