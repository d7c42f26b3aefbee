"""The operators' dashboard (/dashboard, feed/dashboard.py): only operator users see it; headless
Chromium renders it with non-empty inline SVG charts and no script, and a screenshot is not blank."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.html
import pytest
from aiohttp import web

from tests.conftest import SAMPLES
from tests.pngpixels import colours, rgb
from tests.test_feed_browser import _free_port, chromium
from tests.test_feed_support import ANALYST, USERS, basic, settings, store_document
from tests.test_store import make_incident
from xmppbridge.feed.access import User
from xmppbridge.feed.app import make_app
from xmppbridge.feed.auth import hash_password
from xmppbridge.feed.dashboard import AHEAD, ARRIVAL_MEDIAN, COLOURS, MEDIAN, P95, peak_depths
from xmppbridge.peers import Outcome
from xmppbridge.policy.rights import Rights
from xmppbridge.store import Store
from xmppbridge.store.items import ItemRef, Refused, SignedItem

OPERATOR = User("ops", Rights.parse(["all"]), password_hash=hash_password("ops-pw", n=2**8), operator=True)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[str]:
    """A member's store as the demo leaves it (mirrored samples, our own published items, a refusal,
    peers, a waiting outbox item), served on a real port."""
    with Store(tmp_path / "dashboard.sqlite") as store:
        for sample in sorted(SAMPLES.glob("*.xml")):
            store_document(store, sample.read_bytes())
        # A copy from a member whose clock is an hour ahead of ours: stored before the time it states.
        ahead = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        store_document(store, (SAMPLES / "01-phishing-public-v2.xml").read_bytes()
                       .replace(b"2024-05-02T08:05:00Z", ahead).replace(b"A-2024-0101", b"A-2024-0199"))
        for n in range(3):
            signed = SignedItem("iodef/public/other", f"out-{n}", b"<p/>", make_incident(n), "2.0")
            item = store.enqueue(signed, source="cli:x")
            if n:
                store.mark_published(item, service="pubsub.a.test")
        store.add_reject(Refused("xmpp", "bad-signature", "digest mismatch", b"<x/>",
                                 ItemRef("pubsub.c.test", "iodef/public/other", "bad")))
        store.record_peer("pubsub.b.test", Outcome(True))
        store.record_peer("pubsub.c.test", Outcome(False, "remote-server-timeout", "no answer"))
        port = _free_port()
        url = f"http://127.0.0.1:{port}/"
        app = make_app(store, settings(base_url=url, users=(*(u.user() for u in USERS), OPERATOR)))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield url
        await runner.cleanup()


async def test_only_operators_see_the_dashboard(site: str) -> None:
    from aiohttp import ClientSession

    async with ClientSession() as http:
        async with http.get(site + "dashboard") as response:
            assert response.status == 401  # sign in first, as for a collection one may not read
        async with http.get(site + "dashboard", headers=ANALYST.headers) as response:
            assert response.status == 404  # a reader of everything who is no operator
        async with http.get(site + "dashboard", headers=basic("ops", "ops-pw")) as response:
            assert response.status == 200 and "svg" in await response.text()


async def test_chromium_renders_non_empty_charts(site: str, tmp_path: Path) -> None:
    signed_in = site.replace("http://", "http://ops:ops-pw@")
    page = lxml.html.fromstring(await chromium(tmp_path, "--dump-dom", signed_in + "dashboard"))
    assert page.findtext(".//h1") == "Dashboard" and not page.xpath("//script")
    charts = page.xpath("//svg[@class='chart']")
    # per day, refusals, publish delay, arrival delay (one member), outbox depth per day and now
    assert len(charts) == 6
    assert all(chart.xpath(".//rect") for chart in charts)  # each one draws something
    titles = page.xpath("//svg[@class='chart']//rect/title/text()")
    assert any("bad-signature: 1" in t for t in titles) and any("iodef/public/other: 1" in t for t in titles)
    assert any("median" in t for t in titles) and any("peak: " in t for t in titles)
    [arrival] = page.xpath("//svg[@aria-label='arrival delay per day from csirt.a.test']")
    arrived = arrival.xpath(".//rect/title/text()")
    assert any(" median: " in t and t.endswith(" d") for t in arrived)  # the samples state 2024 times
    assert any(": 1 stored before the time they state (clocks differ), counted as 0" in t for t in arrived)
    assert "clocks may differ" in page.xpath("string(//h2[contains(., 'Arrival delay')])")
    assert page.xpath("//table[@class='peers']//circle[@fill='#d62728']")  # c is unreachable
    members = page.xpath("//table[@class='members']//td[1]/text()")
    assert "csirt.a.test" in members
    shot = tmp_path / "dashboard.png"  # kept by pytest with the test's other files
    await chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", signed_in + "dashboard")
    drawn = colours(shot.read_bytes())
    assert sum(drawn.values()) == 1200 * 1600 and len(drawn) > 32  # not a blank page
    # the bars as drawn: refusals and an unreachable peer, the outbox, publish and arrival delays, skew
    assert all(drawn[rgb(colour)] > 50 for colour in (COLOURS["private"], "#ff9f00", MEDIAN, P95,
                                                      ARRIVAL_MEDIAN, AHEAD))


def test_the_outbox_depth_per_day_is_its_peak_from_queued_and_published_times() -> None:
    day = datetime(2026, 12, 1, 10, tzinfo=UTC)
    at = [day + timedelta(minutes=n) for n in range(6)]
    outbox = [(at[0], at[1]), (at[1], at[2]),  # one at a time, published as the next is queued: depth 1
              (at[3], at[5]), (at[4], at[5]),  # two waiting at once
              (at[4], None),  # still waiting, into the next days
              (day - timedelta(days=1), day + timedelta(days=1, hours=1))]  # queued before the window
    days = ["2026-12-01", "2026-12-02", "2026-12-03"]
    assert peak_depths(outbox, days) == {"2026-12-01": 4, "2026-12-02": 2, "2026-12-03": 1}
    assert peak_depths([], days) == dict.fromkeys(days, 0)


def test_the_store_gives_each_mirrored_entrys_stated_and_received_times_on_both_backends(
        store_target: str) -> None:
    with Store(store_target) as store:
        since = datetime.now(UTC) - timedelta(minutes=5)
        sample = (SAMPLES / "01-phishing-public-v2.xml").read_bytes()
        store_document(store, sample)
        store_document(store, sample.replace(b"A-2024-0101", b"A-2024-0102"), origin="local")  # ours
        [(member, stated, received)] = store.activity(since).arrivals
        assert (member, stated) == ("csirt.a.test", datetime(2024, 5, 2, 8, 5, tzinfo=UTC))
        assert since <= received <= datetime.now(UTC)
        assert store.activity(datetime.now(UTC) + timedelta(minutes=1)).arrivals == []  # the window
