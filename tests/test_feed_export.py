"""Indicators on the feed: the table in an entry's HTML and the entry's CSV blocklist (feed/export.py),
with the restriction on every row, under the entry's access rule, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import SAMPLES
from tests.test_feed_support import ANALYST, BASE, MEMBER, client_for, store_document
from xmppbridge.feed.export import COLUMNS
from xmppbridge.store import Store

DATA = Path(__file__).parent / "data" / "iodef"
HTML = {"Accept": "text/html"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as opened:  # rendering only: the store's contract is tested apart
        yield opened


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient]:
    client = await client_for(store)
    yield client
    await client.close()


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
    assert "<code>192.0.2.0/25</code>" in table and "<code>53/udp</code>" in table
    assert table.count("<tr>") == 5 and "rate-limit-network" in table  # a header row and four indicators
    assert f'href="{BASE}entries/{entry.id}/indicators.csv"' in page


async def test_a_document_without_indicators_says_so(store: Store, client: TestClient) -> None:
    entry = store_document(store, (DATA / "iodef2-minimal.xml").read_bytes())
    page = await (await client.get(f"/entries/{entry.id}", headers={**ANALYST.headers, **HTML})).text()
    assert "None: the document names no address" in page
    body = await (await client.get(f"/entries/{entry.id}/indicators.csv", headers=ANALYST.headers)).text()
    assert rows(body) == []
