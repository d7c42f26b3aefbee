"""Several ``xmppbridge serve-feed`` processes over one store answer every URL alike, over SQLite and over
PostgreSQL (``store.url``, a private cluster: tests/postgres.py).

Two real serve-feed processes over one store: every URL a crawl of the feed finds (Atom, AtomPub, HTML,
OpenSearch; anonymous and signed in) gets the same status, bytes, ETag and Last-Modified from either, a
validator from one gets 304 from the other, a change made by a third process shows at both, and SIGHUP
applies changed rights at both. With Prosody (two federated domains): an AtomPub POST to a serve-feed
lands in the outbox, the running bridge publishes it, and the peer mirrors it.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.feedprocs import Reply, ServedFeed, request, serve_feeds, start_feed, stop_feed
from tests.integration import eventually, loopback_consortium, running
from tests.test_feed_support import iodef2, store_document
from xmppbridge.cli import EXIT_ERROR, main
from xmppbridge.demo.consortium import Consortium, Member
from xmppbridge.store import Store

SLOT = int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))
FEED_PORT_BASE = 18581  # + 20 * slot (loopback_consortium); the serve-feed processes take the next ports
ARCHIVE_SIZE = 3
HTML = {"Accept": "text/html"}
BACKENDS = ["sqlite", "postgresql"]
_LINK = re.compile(rb'(?:href|src)="([^"]+)"')


def host(number: int) -> str:
    return f"127.0.{SLOT}.{number}"


@contextmanager
def on_backend(request: pytest.FixtureRequest, member: Member, database: str) -> Iterator[None]:
    """The member's store on the backend the test is parametrized with: its SQLite file, or a database
    of its own in the test run's private PostgreSQL cluster (tests/postgres.py), dropped afterwards."""
    if request.param == "sqlite":
        yield
        return
    cluster = request.getfixturevalue("pg_cluster")
    member.store_url = cluster.create_database(database)
    try:
        yield
    finally:
        cluster.drop_database(database)


@pytest.fixture(scope="module", params=BACKENDS)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    """One member's config and keys (no XMPP server is started), and a store with collections to page."""
    lab = loopback_consortium(tmp_path_factory.mktemp("feedprocs"), {"a": 132},
                              feed_port_base=FEED_PORT_BASE, discovery_interval=1.0)
    with on_backend(request, lab["a"], "feedprocs_a"):
        lab.write_files(subscriptions={"a": []}, users={"outsider": {"read": []}},
                        feed={"archive_size": ARCHIVE_SIZE})
        assert ("url: postgresql://" in lab["a"].config_path.read_text()) == (request.param == "postgresql")
        with Store(lab["a"].store) as store:
            fill(store)
        yield lab


def fill(store: Store) -> None:
    """Eight public entries (two archives close), one of them revised and one retracted, two partner
    ones with related incidents; the private collection stays empty (never changed)."""
    for n in range(8):
        store_document(store, iodef2(f"PUB-{n}", generated=f"2024-05-0{n + 1}T12:00:00Z",
                                     description=f"Botnet C2 number {n}", related="PUB-0" if n else None))
    store_document(store, iodef2("PUB-1", generated="2024-05-02T12:00:00Z", description="Revised C2"))
    found = store.find_entry("pubsub.a.test", "iodef/public/mitigation", "csirt.example.org/PUB-2")
    assert found is not None and store.mark_deleted(found.service, found.node, found.item_id)
    for n in range(2):
        store_document(store, iodef2(f"PART-{n}", restriction="partner", description="Phishing wave"))


def ports(lab: Consortium, count: int, offset: int = 2) -> list[int]:
    """Ports for serve-feed processes after the member's own feed port (operator listeners: + 1000)."""
    return [lab["a"].feed_port + offset + i for i in range(count)]


@pytest.fixture(scope="module")
def feeds(lab: Consortium, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServedFeed]]:
    logs = tmp_path_factory.mktemp("logs")
    with serve_feeds(lab["a"].config_path, host(132), ports(lab, 2), logs) as feeds:
        yield feeds


def on(feed: ServedFeed, url: str, base: str) -> str:
    """``url`` (under the feed's base URL, as every link is) at this process."""
    assert url.startswith(base), url
    return feed.url + url[len(base):]


def crawl(feeds: list[ServedFeed], base: str, start: list[str], headers: dict[str, str],
          limit: int = 200) -> dict[str, Reply]:
    """Every URL under ``base`` reachable from ``start``, fetched from each process; asserts that the
    processes agree on each and returns the first one's replies."""
    seen: dict[str, Reply] = {}
    queue = [base + path for path in start]
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen:
            continue
        replies = [request(on(feed, url, base), headers) for feed in feeds]
        first = replies[0]
        for other in replies[1:]:
            assert (other.status, other.validators(), other.body) == (first.status, first.validators(),
                                                                      first.body), url
        seen[url] = first
        for raw in _LINK.findall(first.body):
            link = html.unescape(raw.decode())
            if link.startswith(base) and "{" not in link and link not in seen:
                queue.append(link)
    return seen


START = [".well-known/rolie/servicedocument", ".well-known/rolie/categorydocument", "search/description",
         "feeds/public", "feeds/public?count=2", "feeds/public?after=0&count=2", "feeds/partner",
         "feeds/private", "search?q=botnet&count=2", "search?q=nothing-matches-this", "login", "healthz"]


@pytest.mark.parametrize("who", ["anonymous", "analyst"])
@pytest.mark.parametrize("accept", ["xml", "html"])
def test_two_processes_answer_every_url_alike(lab: Consortium, feeds: list[ServedFeed], who: str,
                                              accept: str) -> None:
    base = lab["a"].feed_url  # feed.base_url: where every link points, whichever process wrote it
    headers = {**(HTML if accept == "html" else {}), **(lab["a"].basic_auth() if who == "analyst" else {})}
    replies = crawl(feeds, base, START, headers)
    statuses = {url[len(base):]: reply.status for url, reply in replies.items()}
    assert statuses["feeds/public"] == 200 and statuses["feeds/private"] == (200 if who == "analyst" else 401)
    assert any("/archive/2" in url for url in statuses), "the crawl reached the archives"
    assert any("/history" in url for url in statuses) and any("/revisions/" in url for url in statuses)
    assert any("startPage=2" in url for url in statuses), "the crawl paged a search"
    assert len(replies) > 30
    if who == "analyst":
        assert statuses["login"] == 303 and replies[base + "login"].headers["Location"] == (
            base + ".well-known/rolie/servicedocument")
        # A retracted entry answers 410 at either process (its tombstone's link leads there).
        assert 410 in statuses.values()


def test_a_validator_from_one_process_is_current_at_the_other(lab: Consortium,
                                                              feeds: list[ServedFeed]) -> None:
    base, auth = lab["a"].feed_url, lab["a"].basic_auth()
    replies = crawl(feeds, base, START, auth)
    checked = 0
    for url, reply in replies.items():
        etag, modified = reply.headers.get("ETag"), reply.headers.get("Last-Modified")
        if reply.status != 200 or etag is None:
            continue
        for feed in feeds:
            at = on(feed, url, base)
            assert request(at, {**auth, "If-None-Match": etag}).status == 304, url
            if modified is not None:
                assert request(at, {**auth, "If-Modified-Since": modified}).status == 304, url
        checked += 1
    assert checked > 20
    # The empty collection too: it was never changed, so its validators do not move with the clock.
    empty = feeds[0].get("feeds/private", auth)
    assert empty.headers["Last-Modified"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert feeds[1].get("feeds/private", {**auth, "If-None-Match": empty.headers["ETag"]}).status == 304


def test_a_change_by_another_process_shows_at_both(lab: Consortium, feeds: list[ServedFeed]) -> None:
    before = [feed.get("feeds/public") for feed in feeds]
    archive = feeds[0].get("feeds/public/archive/1")
    with Store(lab["a"].store) as store:  # as the bridge's mirror would, from its own process
        store_document(store, iodef2("PUB-NEW", generated="2024-06-01T12:00:00Z", description="New C2"))
    after = [feed.get("feeds/public", {"If-None-Match": before[0].headers["ETag"]}) for feed in feeds]
    assert [reply.status for reply in after] == [200, 200]
    assert after[0].body == after[1].body and b"PUB-NEW" in after[0].body
    assert after[0].headers["ETag"] == after[1].headers["ETag"] != before[0].headers["ETag"]
    # A closed archive stays what it was, at either process.
    assert {feed.get("feeds/public/archive/1", {"If-None-Match": archive.headers["ETag"]}).status
            for feed in feeds} == {304}


def test_health_says_feed_process(feeds: list[ServedFeed]) -> None:
    health = [feed.health() for feed in feeds]
    assert [h["role"] for h in health] == ["feed", "feed"]
    assert {h["pid"] for h in health} == {feed.process.pid for feed in feeds}
    assert health[0]["bridge_connection"] == "never started" and health[0]["entries"] == health[1]["entries"]


def test_sighup_applies_changed_rights_at_every_process(lab: Consortium, feeds: list[ServedFeed]) -> None:
    config = lab["a"].config_path
    outsider = lab["a"].basic_auth("outsider")
    assert {feed.get("feeds/partner", outsider).status for feed in feeds} == {404}
    original = config.read_text()
    data = yaml.safe_load(original)
    data["feed"]["users"]["outsider"]["read"] = ["partner"]
    try:
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        for feed in feeds:
            feed.process.send_signal(signal.SIGHUP)
        eventually(lambda: {feed.get("feeds/partner", outsider).status for feed in feeds} == {200},
                   what="partner readable by outsider at both processes")
        replies = [feed.get("feeds/partner", outsider) for feed in feeds]
        assert replies[0].body == replies[1].body
    finally:
        config.write_text(original)
        for feed in feeds:
            feed.process.send_signal(signal.SIGHUP)
    eventually(lambda: {feed.get("feeds/partner", outsider).status for feed in feeds} == {404},
               what="the rights taken back")
    assert all(feed.process.poll() is None for feed in feeds)
    assert "needs a restart" not in feeds[0].log_tail(), "the command line's --listen is no config change"


def test_reuse_port_shares_one_address(lab: Consortium, tmp_path: Path) -> None:
    shared = ports(lab, 1, offset=6)[0]
    with serve_feeds(lab["a"].config_path, host(132), ports(lab, 2, offset=7), tmp_path, "--reuse-port",
                     listen_port=shared) as feeds:
        replies = [request(f"http://{host(132)}:{shared}/feeds/public") for _ in range(20)]
        assert {reply.status for reply in replies} == {200}
        assert len({reply.body for reply in replies}) == 1
        assert all(feed.process.poll() is None for feed in feeds)


def test_a_taken_address_is_a_clear_error(lab: Consortium, feeds: list[ServedFeed], tmp_path: Path) -> None:
    taken = int(feeds[0].url.rsplit(":", 1)[1].rstrip("/"))
    with pytest.raises(RuntimeError, match="exited with 2") as failed:
        stop_feed(start_feed(lab["a"].config_path, host(132), ports(lab, 1, offset=9)[0],
                             tmp_path / "third.log", listen_port=taken))
    assert "feed.listen: cannot listen on" in str(failed.value) and "--reuse-port" in str(failed.value)
    assert "Traceback" not in str(failed.value)


@pytest.mark.parametrize(("option", "value", "problem"), [
    # The override is checked like the file: passwords would cross the network in clear.
    ("--listen", "0.0.0.0:18999", "feed.users: passwords and tokens would cross the network in clear"),
    ("--listen", "127.0.0.1", "feed.listen: must be host:port"),
    ("--operator-listen", "192.0.2.1:9180", "metrics.listen: 192.0.2.1 is not a loopback address"),
])
def test_command_line_addresses_are_checked_like_the_config(
        lab: Consortium, capsys: pytest.CaptureFixture[str], option: str, value: str, problem: str) -> None:
    assert main(["serve-feed", "-c", str(lab["a"].config_path), option, value]) == EXIT_ERROR
    assert problem in capsys.readouterr().err


# -- with XMPP: writes through the outbox to the running bridge and on to the peer -------------------


@pytest.fixture(scope="module", params=BACKENDS)
def federation(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    """A (its store on the backend of the parameter) and B, federated over Prosody, a bridge each."""
    if shutil.which("prosody") is None:
        pytest.fail("prosody is not installed: run `make test`, which installs it")
    consortium = loopback_consortium(tmp_path_factory.mktemp("feedprocs-xmpp"), {"a": 132, "b": 133},
                                     feed_port_base=FEED_PORT_BASE + 10, discovery_interval=1.0)
    with on_backend(request, consortium["a"], "feedprocs_xmpp_a"):
        # A short write timeout: a POST while the bridge is down answers 202 (queued) soon.
        consortium.write_files(subscriptions={"a": [], "b": ["a"]}, feed={"write_timeout": 2})
        with running(consortium):
            yield consortium


@pytest.mark.integration
def test_atompub_post_to_a_feed_process_is_published_by_the_bridge(federation: Consortium,
                                                                    tmp_path: Path) -> None:
    a, b = federation["a"], federation["b"]
    auth = {**a.basic_auth(), "Content-Type": "application/xml"}
    with serve_feeds(a.config_path, a.ip, [a.feed_port + 2, a.feed_port + 3], tmp_path) as feeds:
        document = iodef2("FP-1", name="csirt.a.test", description="Posted to a feed process")
        created = feeds[0].get("feeds/public", auth, method="POST", body=document)
        assert created.status == 201, created.body
        location = created.headers["Location"]
        assert location.startswith(a.feed_url + "entries/")  # the base URL, not the process's address
        # The bridge's feed and the other feed process serve the entry the same.
        path = location[len(a.feed_url):]
        entries = [request(location, a.basic_auth()), feeds[1].get(path, a.basic_auth())]
        assert entries[0].body == entries[1].body and entries[0].headers["ETag"] == entries[1].headers["ETag"]
        eventually(lambda: b"FP-1" in request(b.feed_url + "search?incident=FP-1").body, what="FP-1 at B")

        # With the bridge down the document waits in the outbox (202), and goes out when it is back.
        federation.stop_bridge("a")
        queued = feeds[1].get("feeds/public", auth, method="POST",
                              body=iodef2("FP-2", name="csirt.a.test", description="Queued meanwhile"))
        assert queued.status == 202, queued.body
        with Store(a.store) as store:
            [outbox_id] = store.outbox_ids_for_source("http:analyst")[-1:]
            item = store.outbox_item(outbox_id)
            assert item is not None and item.status == "pending" and item.item_id.endswith("FP-2")
        federation.start_bridge("a")
        eventually(lambda: b"FP-2" in request(b.feed_url + "search?incident=FP-2").body, timeout=60,
                   what="FP-2 at B after A's bridge came back")

        def status() -> str | None:
            with Store(a.store) as store:
                item = store.outbox_item(outbox_id)
                return None if item is None or item.status != "published" else item.status

        # B may hold the notification before A has read its server's answer and marked the item published.
        assert eventually(status, what="FP-2 marked published in A's outbox") == "published"
        assert all(feed.health()["bridge_connection"] == "online" for feed in feeds)
