"""The HTML views in a real browser: headless Chromium (Debian's ``chromium``) renders the service
document, a feed page, an entry and search results, and the links and forms it shows lead on."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode, urljoin

import lxml.html
import pytest
from aiohttp import ClientSession, web

from tests.pngpixels import chunks
from tests.test_feed_support import iodef2, settings, store_document
from xmppbridge.feed.app import make_app
from xmppbridge.policy.nodes import RESTRICTIONS
from xmppbridge.store import Store

CHROMIUM = shutil.which("chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is not installed: run `make test`, which installs it")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[str]:
    """A feed with a few pages of incidents, one of them hostile, served on a real port."""
    with Store(tmp_path / "browser.sqlite") as store:
        for n in range(7):
            store_document(
                store,
                iodef2(
                    f"WEB-{n}", description=f"Phishing wave number {n}", report=f"2024-05-0{n + 1}T12:00:00Z"
                ),
            )
        store_document(
            store,
            iodef2(
                "WEB-EVIL",
                description="&lt;script&gt;document.title='owned'&lt;/script&gt;"
                "&lt;img src=x onerror=alert(1)&gt;",
            ),
        )
        port = _free_port()
        # Anonymous reading of everything is fine in process on loopback; Chromium has no credentials.
        app = make_app(
            store,
            settings(
                base_url=f"http://127.0.0.1:{port}/", page_size=3, anonymous_restrictions=set(RESTRICTIONS)
            ),
        )
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}/"
        await runner.cleanup()


async def chromium(tmp_path: Path, *args: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return out


async def dom(tmp_path: Path, url: str) -> lxml.html.HtmlElement:
    """The page as Chromium built it (after parsing, styles and any script — there must be none)."""
    return lxml.html.fromstring(await chromium(tmp_path, "--dump-dom", url))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def links(page: lxml.html.HtmlElement, base: str) -> list[str]:
    return [urljoin(base, a.get("href")) for a in page.iter("a")]


async def test_pages_render_and_links_work(site: str, tmp_path: Path) -> None:
    service = await dom(tmp_path, site + ".well-known/rolie/servicedocument")
    assert service.findtext(".//h1") == "Incident collections"
    assert site + "feeds/public" in links(service, site)

    feed = await dom(tmp_path, site + "feeds/public")
    assert feed.findtext(".//h1") == "Incidents (public)"
    rows = feed.findall(".//table//tr")[1:]
    assert len(rows) == 3  # page_size
    older = next(a.get("href") for a in feed.iter("a") if a.get("rel") == "next")
    second = await dom(tmp_path, older)
    assert second.findall(".//table//tr")[1].text_content() != rows[0].text_content()  # paging moved on

    entry_url = next(u for u in links(feed, site) if "/entries/" in u)
    entry = await dom(tmp_path, entry_url)
    assert "IncidentID" in entry.text_content() and "The incident" in entry.text_content()
    assert entry.xpath("//dl[@class='iodef']//dt[normalize-space()='Description']")

    # every link on these pages answers, as a browser asks for it
    async with ClientSession(headers={"Accept": "text/html"}) as session:
        for url in set(links(service, site) + links(feed, site) + links(entry, site)):
            async with session.get(url) as response:
                # "Sign in" asks the browser for credentials; everything else is a page
                assert response.status == (401 if url == site + "login" else 200), url


async def test_search_form_submits(site: str, tmp_path: Path) -> None:
    page = await dom(tmp_path, site + "search")
    [form] = page.xpath("//form[@class='search']")
    assert form.get("method") == "get"
    fields = {i.get("name") for i in form.iter("input")} | {s.get("name") for s in form.iter("select")}
    assert {"q", "incident", "alternative", "category", "reporttime"} <= fields
    # what a browser sends for this form with "wave number 4" typed into the text field
    query = urlencode([(name, "wave number 4" if name == "q" else "") for name in sorted(fields)])
    results = await dom(tmp_path, form.get("action") + "?" + query)
    titles = [a.text for a in results.xpath("//table//td/a")]
    assert titles == ["Phishing wave number 4"]
    assert results.xpath("//input[@name='q']/@value") == ["wave number 4"]


async def test_hostile_incidents_stay_text(site: str, tmp_path: Path) -> None:
    page = await dom(tmp_path, site + "search?incident=WEB-EVIL")
    entry_url = next(u for u in links(page, site) if "/entries/" in u)
    entry = await dom(tmp_path, entry_url)
    assert entry.findtext(".//title") != "owned"  # no script ran
    assert not entry.xpath("//script") and not entry.xpath("//img")
    assert "<script>document.title='owned'</script>" in entry.text_content()


async def test_screenshot(site: str, tmp_path: Path) -> None:
    shot = tmp_path / "feed.png"
    await chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,800", site + "feeds/public")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1200, 800)
    pixels = zlib.decompress(b"".join(chunks(png, b"IDAT")))
    assert len(set(pixels)) > 32  # text, table lines and the header bar, not a blank page
