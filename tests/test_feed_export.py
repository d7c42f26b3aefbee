"""Indicators on the feed: the table in an entry's HTML, the entry's CSV blocklist (feed/export.py), with
the restriction on every row, under the entry's access rule, and safe to open in a spreadsheet, and
``/search?indicator=`` with address and network containment on both store backends."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from lxml import etree

from tests.conftest import SAMPLES
from tests.test_feed_search import found
from tests.test_feed_stix import objects, of_type
from tests.test_feed_support import ANALYST, BASE, MEMBER, OUTSIDER, client_for, store_document
from xmppbridge.feed.export import COLUMNS
from xmppbridge.iodef.document import read_document, split_document
from xmppbridge.store import Store

DATA = Path(__file__).parent / "data" / "iodef"
HTML = {"Accept": "text/html"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as opened:  # rendering only: the store's contract is tested apart
        yield opened


def rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


async def test_an_entrys_indicators_as_csv_carry_its_restriction(store: Store, client: TestClient) -> None:
    entry = store_document(store, (DATA / "iodef2-indicators.xml").read_bytes())
    response = await client.get(f"/entries/{entry.id}/indicators.csv", headers=MEMBER.headers)
    assert response.status == 200 and response.content_type == "text/csv"
    body = await response.text()
    assert body.startswith(",".join(COLUMNS) + "\r\n")  # RFC 4180: a header, CRLF line ends
    found = rows(body)
    assert len(found) == 10 and {r["restriction"] for r in found} == {"partner"}  # green is partner
    assert {r["entry"] for r in found} == {f"{BASE}entries/{entry.id}"}
    sha = next(r for r in found if r["kind"] == "hash")
    assert (sha["algorithm"], sha["value"], sha["role"]) == (
        "sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "observable")
    source = [r["value"] for r in found if r["role"] == "source"]
    assert source == ["drop.example.net", "2001:db8::1", "203.0.113.0/25", "8080/tcp"]
    assert {r["expectation"] for r in found if r["role"] == "source"} == {"block-host,block-network"}
    again = await client.get(f"/entries/{entry.id}/indicators.csv", headers={
        **MEMBER.headers, "If-None-Match": response.headers["ETag"]})
    assert again.status == 304


async def test_a_formula_in_a_peers_document_is_defused(store: Store, client: TestClient) -> None:
    hostile = (SAMPLES / "03-malware-need-to-know-v1.xml").read_bytes().replace(
        b"ws-0415.corp.example.com", b"=HYPERLINK(&quot;http://x.example/&quot;)")
    entry = store_document(store, hostile)
    found = rows(await (await client.get(f"/entries/{entry.id}/indicators.csv",
                                         headers=ANALYST.headers)).text())
    assert found[0]["value"] == "'=hyperlink(\"http://x.example/\")"  # a domain, lower-cased, not a formula
    assert all(not r["value"].startswith(("=", "+", "-", "@")) for r in found)


async def test_the_entry_page_shows_the_indicators_and_links_the_csv(store: Store,
                                                                     client: TestClient) -> None:
    entry = store_document(store, (SAMPLES / "04-ddos-amber-v2.xml").read_bytes())
    page = await (await client.get(f"/entries/{entry.id}", headers={**ANALYST.headers, **HTML})).text()
    table = page[page.index('<table class="indicators">'):]
    table = table[:table.index("</table>")]
    # each value links to a search for every incident naming it
    assert f'<a href="{BASE}search?indicator=192.0.2.0%2F25">192.0.2.0/25</a>' in table
    assert ">53/udp</a>" in table
    assert table.count("<tr>") == 5 and "rate-limit-network" in table  # a header row and four indicators
    assert f'href="{BASE}entries/{entry.id}/indicators.csv"' in page


async def test_a_document_without_indicators_says_so(store: Store, client: TestClient) -> None:
    entry = store_document(store, (DATA / "iodef2-minimal.xml").read_bytes())
    page = await (await client.get(f"/entries/{entry.id}", headers={**ANALYST.headers, **HTML})).text()
    assert "None: the document names no address" in page
    body = await (await client.get(f"/entries/{entry.id}/indicators.csv", headers=ANALYST.headers)).text()
    assert rows(body) == []


@pytest.fixture
async def samples(store_target: str) -> AsyncIterator[TestClient]:
    """The demo's samples, split into one document per Incident as the bridge publishes them, and the
    indicator test document, in an SQLite or a PostgreSQL store."""
    with Store(store_target) as store:
        for path in (*sorted(SAMPLES.glob("*.xml")), DATA / "iodef2-indicators.xml"):
            for piece in split_document(read_document(path.read_bytes())):
                store_document(store, etree.tostring(piece.root))
        client = await client_for(store)
        yield client
        await client.close()


@pytest.mark.parametrize(("indicator", "expected"), [
    ("198.51.100.10", ["A-2024-0102", "A-2024-0104"]),  # the address, and 0102's /24 around it
    ("192.0.2.5", ["A-2024-0104"]),  # inside 192.0.2.0/25, a network named as a source
    ("192.0.2.0/24", ["A-2024-0102", "A-2024-0103", "A-2024-0104", "A-2024-0105", "A-2024-0106",
                      "A-2024-0108"]),  # all inside it
    ("198.51.100.64/26", ["A-2024-0102", "A-2024-0107", "A-2024-0108"]),  # .80, .81; 0102's /24 holds it
    ("203.0.113.5", ["A-2024-0201"]),  # inside a masked network, "203.0.113.0 255.255.255.128"
    ("2001:DB8::1", ["A-2024-0201"]),  # IPv6, written another way
    ("2001:db8::/32", ["A-2024-0201"]),
    ("::ffff:192.0.2.5", []),  # an IPv6 address is not the IPv4 one it maps
    ("www.example.com", ["A-2024-0104"]),
    ("WWW.Example.COM", ["A-2024-0104"]),  # names are stored in lower case
    ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", ["A-2024-0201"]),
    ("443/tcp", ["A-2024-0101", "A-2024-0103", "A-2024-0105", "A-2024-0108"]),
    ("example.com", []),  # exact, not a suffix
])
async def test_search_by_indicator(samples: TestClient, indicator: str, expected: list[str]) -> None:
    assert await found(samples, "indicator=" + quote(indicator)) == expected


async def test_search_by_indicator_shows_only_what_the_reader_may_read(samples: TestClient) -> None:
    everyone = await found(samples, "indicator=443/tcp", headers=OUTSIDER.headers)
    assert everyone == ["A-2024-0101"]  # the public one; 0103, 0105 and 0108 are not


async def test_a_collection_page_and_search_results_export_what_their_feeds_show(samples: TestClient) -> None:
    partner = rows(await (await samples.get("/feeds/partner/indicators.csv", headers=MEMBER.headers)).text())
    assert {r["incident_id"] for r in partner} == {"A-2024-0102", "A-2024-0201"}
    assert {r["restriction"] for r in partner} == {"partner"}
    one = await samples.get("/feeds/partner/stix.json?count=1", headers=MEMBER.headers)
    assert one.status == 200 and len(of_type(await one.read(), "incident")) == 1  # the page's size
    assert (await samples.get("/feeds/partner/stix.json", headers=OUTSIDER.headers)).status == 404
    everything = await samples.get("/search/stix.json?indicator=192.0.2.0/24", headers=ANALYST.headers)
    names = {o["external_references"][0]["external_id"] for o in of_type(await everything.read(), "incident")}
    assert names == {"A-2024-0102", "A-2024-0103", "A-2024-0104", "A-2024-0105", "A-2024-0106",
                     "A-2024-0108"}
    public = await (await samples.get("/search/stix.json?indicator=192.0.2.0/24",
                                      headers=OUTSIDER.headers)).read()
    assert objects(public) == []  # none of them is public: nothing, not even a marking
    blocklist = rows(await (await samples.get("/search/indicators.csv?indicator=443/tcp",
                                              headers=OUTSIDER.headers)).text())
    assert {r["incident_id"] for r in blocklist} == {"A-2024-0101"} and {r["restriction"] for r in
                                                                         blocklist} == {"public"}
    assert (await samples.get("/search/stix.json?count=0")).status == 400


async def test_a_deleted_entry_is_not_exported(store: Store, client: TestClient) -> None:
    entry = store_document(store, (SAMPLES / "01-phishing-public-v2.xml").read_bytes())
    store.mark_deleted(entry.service, entry.node, entry.item_id)
    assert rows(await (await client.get("/feeds/public/indicators.csv")).text()) == []
    assert of_type(await (await client.get("/feeds/public/stix.json")).read(), "incident") == []
