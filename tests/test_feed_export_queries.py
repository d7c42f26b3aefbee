"""The exports read the store a fixed number of times per page, whatever its size: no query per entry
(an "N+1" would make a page of 50 fifty times dearer on PostgreSQL, a network round trip each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.test_feed_support import MEMBER, store_document
from xmppbridge.feed.taxii import collection_id
from xmppbridge.store import Store
from xmppbridge.store.sql import SqliteConnection

DOCUMENT = (Path(__file__).parent / "data" / "iodef" / "iodef2-indicators.xml").read_bytes()
TAXII = {"Accept": "application/taxii+json;version=2.1"}
COLLECTION = f"/taxii2/api/collections/{collection_id('partner')}/"
PAGES = [  # a page of N, as a URL
    "/feeds/partner/stix.json?count={n}",
    "/feeds/partner/indicators.csv?count={n}",
    "/search/stix.json?category=partner&count={n}",
    "/search/indicators.csv?category=partner&count={n}",
    COLLECTION + "objects/?limit={n}",
    COLLECTION + "manifest/?limit={n}",
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as opened:
        for n in range(60):  # partner ("green"), ten indicators each
            store_document(opened, DOCUMENT.replace(b"A-2024-0201", f"Q-{n}".encode()))
        yield opened


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the store runs from now on."""
    seen: list[str] = []
    execute = SqliteConnection.execute

    def counted(self: SqliteConnection, sql: str, *args: Any) -> Any:
        seen.append(sql)
        return execute(self, sql, *args)

    monkeypatch.setattr(SqliteConnection, "execute", counted)
    return seen


async def _count(client: TestClient, statements: list[str], url: str) -> int:
    statements.clear()
    response = await client.get(url, headers={**MEMBER.headers, **TAXII})
    assert response.status == 200, (url, await response.text())
    await response.read()
    return len(statements)


@pytest.mark.parametrize("page", PAGES)
async def test_a_page_of_50_reads_the_store_as_often_as_a_page_of_5(
        client: TestClient, statements: list[str], page: str) -> None:
    few = await _count(client, statements, page.format(n=5))
    many = await _count(client, statements, page.format(n=50))
    assert 0 < few == many, f"{page}: {few} statements for 5, {many} for 50"


async def test_the_misp_window_reads_the_store_a_fixed_number_of_times(
        client: TestClient, statements: list[str]) -> None:
    for url in ("/misp/manifest.json", "/misp/hashes.csv"):
        assert 0 < await _count(client, statements, url) <= 4, statements
