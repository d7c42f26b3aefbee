"""OpenSearch: the description document and every search parameter, each finding exactly what it should."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import feedparser
import pytest
from aiohttp.test_utils import TestClient
from lxml import etree

from tests.test_feed_support import (
    ANALYST,
    BASE,
    NS,
    OS,
    AtomSchemas,
    client_for,
    iodef2,
    link,
    path_of,
    store_document,
)
from xmppbridge.feed.opensearch import parse_interval, parse_request
from xmppbridge.store import Store

RESTRICTION = "urn:ietf:params:rolie:category:csirt:iodef:restriction"
PURPOSE = "urn:ietf:params:rolie:category:csirt:iodef:purpose"

# incident id -> document; the expectations below name these ids
DOCUMENTS = {
    "S-1": iodef2(
        "S-1",
        description="Phishing wave against the résumé portal",
        detect="2024-03-01T10:00:00Z",
        report="2024-03-02T00:00:00Z",
        alternative="ALT-77",
    ),
    "S-2": iodef2(
        "S-2",
        restriction="need-to-know",
        purpose="watch",
        description="Scanning from 192.0.2.1",
        start="2024-04-01T00:00:00Z",
        end="2024-04-02T00:00:00Z",
        related="S-1",
    ),
    "S-3": iodef2(
        "S-3",
        restriction="private",
        description="Phishing kit on a private host",
        generated="2023-12-31T23:59:59Z",
    ),
    "S-4": iodef2("S-4", purpose="reporting", description="Nothing to see", report="2024-03-05T12:00:00Z"),
}


@pytest.fixture
async def client(store_target: str) -> AsyncIterator[TestClient]:
    with Store(store_target) as store:
        for xml in DOCUMENTS.values():
            store_document(store, xml)
        client = await client_for(store)
        yield client
        await client.close()


async def found(client: TestClient, query: str, *, headers: dict[str, str] | None = None) -> list[str]:
    response = await client.get("/search?" + query, headers=ANALYST.headers if headers is None else headers)
    assert response.status == 200, (query, await response.text())
    assert response.headers["Content-Type"].startswith("application/atom+xml;type=feed")
    doc = etree.fromstring(await response.read())
    return sorted(
        p.get("value")
        for p in doc.findall(
            "atom:entry/rolie:property[@name='urn:ietf:params:rolie:property:content-id']", NS
        )
    )


async def test_description_document(client: TestClient) -> None:
    response = await client.get("/search/description")
    assert response.headers["Content-Type"].startswith("application/opensearchdescription+xml")
    doc = etree.fromstring(await response.read())
    assert doc.tag == f"{{{OS}}}OpenSearchDescription"
    assert len(doc.findtext(f"{{{OS}}}ShortName")) <= 16
    urls = doc.findall(f"{{{OS}}}Url")
    assert {u.get("type") for u in urls} == {"application/atom+xml;type=feed", "text/html"}
    template = urls[0].get("template")
    assert template.startswith(BASE + "search?")
    params = dict(re.findall(r"(\w+)=\{([\w:]+)\?\}", template))
    assert params == {
        "q": "searchTerms",
        "category": "atom:category",
        "incident": "iodef:IncidentID",
        "alternative": "iodef:AlternativeID",
        "related": "iodef:RelatedActivity",
        "indicator": "iodef:Observable",
        "reporttime": "iodef:ReportTime",
        "detecttime": "iodef:DetectTime",
        "starttime": "iodef:StartTime",
        "endtime": "iodef:EndTime",
        "generationtime": "iodef:GenerationTime",
        "count": "count",
        "startPage": "startPage",
    }
    # namespace-qualified parameters (draft-ietf-mile-rolie-02 §5.16): the prefixes resolve in scope
    assert urls[0].nsmap["iodef"] == "urn:ietf:params:xml:ns:iodef-2.0"
    assert urls[0].nsmap["atom"] == "http://www.w3.org/2005/Atom"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["S-1", "S-2", "S-3", "S-4"]),
        ("q=phishing", ["S-1", "S-3"]),
        ("q=RESUME+portal", ["S-1"]),
        ("q=phishing&q=kit", ["S-3"]),
        ("q=192.0.2.1", ["S-2"]),
        (f"category={RESTRICTION}+need-to-know", ["S-2"]),
        ("category=private", ["S-3"]),
        (f"category={PURPOSE}+watch", ["S-2"]),
        (f"category={PURPOSE}+reporting&category=public", ["S-4"]),
        ("category=urn:ietf:params:rolie:category:information-type+incident", ["S-1", "S-2", "S-3", "S-4"]),
        ("incident=S-2", ["S-2"]),
        ("incident=S-", []),
        ("alternative=ALT-77", ["S-1"]),
        ("related=S-1", ["S-2"]),
        ("detecttime=2024-03-01", ["S-1"]),
        ("detecttime=2024-03-02/", []),
        ("reporttime=2024-03-01/2024-03-04", ["S-1"]),
        ("reporttime=2024-03-02T00:00:00Z", ["S-1"]),
        ("reporttime=/2024-03-31", ["S-1", "S-4"]),
        ("starttime=2024-03-31T00:00:00Z/2024-04-01T00:00:00Z", ["S-2"]),
        ("endtime=2024-04-02", ["S-2"]),
        ("generationtime=/2023-12-31T23:59:59Z", ["S-3"]),
        ("generationtime=2024-01-01/", ["S-1", "S-2", "S-4"]),
        ("q=phishing&reporttime=2024-03-01/", ["S-1"]),
        ("q=&incident=", ["S-1", "S-2", "S-3", "S-4"]),  # empty optional template parameters select nothing
    ],
)
async def test_each_parameter_finds_exactly_the_expected_entries(
    client: TestClient, query: str, expected: list[str]
) -> None:
    assert await found(client, query) == expected


async def test_readers_find_only_what_they_may_read(client: TestClient) -> None:
    assert await found(client, "q=phishing", headers={}) == ["S-1"]
    assert await found(client, "category=private", headers={}) == []


@pytest.mark.parametrize(
    "query",
    [
        "category=amber",
        "category=urn:x+public",
        f"category={PURPOSE}+public",
        "reporttime=yesterday",
        "reporttime=2024-02-30",
        "reporttime=/",
        "reporttime=2024-05-01/2024-04-01",
        "count=0",
        "count=1000",
        "startPage=0",
        "incident=a&incident=b",
    ],
)
async def test_malformed_searches_are_400(client: TestClient, query: str) -> None:
    response = await client.get("/search?" + query, headers=ANALYST.headers)
    assert response.status == 400, query
    assert (await response.text()).strip()


async def test_results_are_a_paged_feed(client: TestClient, schemas: AtomSchemas) -> None:
    url: str | None = BASE + "search?q=&count=1"
    seen: list[str] = []
    while url is not None:
        response = await client.get(path_of(url), headers=ANALYST.headers)
        body = await response.read()
        doc = schemas.check_atom(body)
        assert feedparser.parse(body).bozo == 0
        assert doc.findtext(f"{{{OS}}}totalResults") == "4" and doc.findtext(f"{{{OS}}}itemsPerPage") == "1"
        assert link(doc, "first") == BASE + "search?count=1"  # the empty q selects nothing and is dropped
        assert link(doc, "last") == BASE + "search?count=1&startPage=4"
        assert dict(parse_qsl(urlsplit(link(doc, "self")).query)).get("count") == "1"
        seen += [link(e, "self") for e in doc.findall("atom:entry", NS)]
        url = link(doc, "next")
    assert len(seen) == len(set(seen)) == 4


async def test_html_search_form(client: TestClient) -> None:
    response = await client.get("/search?q=phishing", headers={**ANALYST.headers, "Accept": "text/html"})
    text = await response.text()
    assert '<form class="search" method="get" action="' + BASE + 'search">' in text
    assert 'name="q" value="phishing"' in text
    assert "Phishing wave against the résumé portal" in text


def test_intervals() -> None:
    day = parse_interval("2024-05-01", "x")
    assert day == (datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 1, 23, 59, 59, 999999, tzinfo=UTC))
    assert parse_interval("2024-05-01T12:00:00+02:00/", "x") == (datetime(2024, 5, 1, 10, tzinfo=UTC), None)
    assert parse_interval("/2024-05-01T12:00:00", "x") == (None, datetime(2024, 5, 1, 12, tzinfo=UTC))  # UTC


def test_request_keeps_criteria_for_links() -> None:
    request = parse_request(
        [("q", "a"), ("count", "5"), ("startPage", "3"), ("x", "y"), ("incident", " ")],
        default_count=50,
        max_count=100,
    )
    assert request.criteria == (("q", "a"),) and (request.count, request.start_page, request.offset) == (
        5,
        3,
        10,
    )
