"""`make demo` as a user meets it: it starts, prints READY with both feed URLs once B mirrors A's samples,
survives a part that dies (and starts it again with the command it prints), and Ctrl-C stops it all;
the store it leaves moves to PostgreSQL with `store copy` and serves the same feed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lxml.html
import pytest

from tests.pngpixels import colours, rgb
from tests.test_feed_browser import FLAGS as CHROMIUM_FLAGS
from tests.test_store_copy import crawl
from xmppbridge.feed.dashboard import ARRIVAL_MEDIAN, COLOURS, P95
from xmppbridge.iodef.markings import RESTRICTIONS
from xmppbridge.store import Store

pytestmark = pytest.mark.integration
ATOM = "http://www.w3.org/2005/Atom"
# A bar of the entries-per-day chart: "2026-12-03 public: 2"
STORED_TITLE = re.compile(r"^\d{4}-\d\d-\d\d (?P<restriction>\S+): (?P<n>\d+)$")
SAMPLE = Path(__file__).resolve().parents[1] / "config" / "samples" / "01-phishing-public-v2.xml"


def _slot() -> int:
    return int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))  # as in conftest: several working copies


def _start_demo(workdir: Path, hosts: tuple[int, ...], port: int, *options: str) -> subprocess.Popen[str]:
    addresses = ",".join(f"127.0.{_slot()}.{host}" for host in hosts)
    return subprocess.Popen(
        [sys.executable, "-m", "xmppbridge.cli", "demo", "--workdir", str(workdir),
         "--addresses", addresses, "--feed-port", str(port), *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def _read_until(demo: subprocess.Popen[str], output: list[str], marker: str, timeout: float = 120) -> bool:
    """Read the demo's output into ``output`` until a line starts with ``marker`` (or it ends)."""
    assert demo.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            return False
        output.append(line)
        if line.startswith(marker):
            return True
    return False


def _health(host: int, port: int) -> dict[str, object]:
    """The detailed health of the member on 127.0.<slot>.<host> whose feed is on ``port``: its operator
    listener, on its own address and the feed's port + 1000."""
    with urllib.request.urlopen(f"http://127.0.{_slot()}.{host}:{port + 1000}/healthz") as response:
        return json.load(response)


def _no_leftovers(workdir: Path) -> None:
    leftovers = subprocess.run(["pgrep", "-fa", str(workdir)], capture_output=True, text=True).stdout
    assert leftovers == ""


def test_demo_runs_survives_a_killed_bridge_and_stops_cleanly_on_ctrl_c(tmp_path: Path,
                                                                       pg_store_url: str) -> None:
    workdir = tmp_path / "demo"
    port = 28181 + 20 * _slot()
    demo = _start_demo(workdir, (32, 33), port)
    output: list[str] = []
    try:
        _read_until(demo, output, "READY ")
        ready = [line for line in output if line.startswith("READY ")]
        assert ready == [f"READY http://127.0.0.1:{port}/ http://127.0.0.1:{port + 1}/\n"], "".join(output)
        for name in ("a.yaml", "b.yaml"):
            assert (workdir / name).exists()
        published = sum(": published to " in line for line in output)
        assert f"B mirrored all {published} incidents published at A, signatures verified.\n" in output
        health = _health(33, port + 1)
        assert health["entries"] == published >= 7  # B mirrored everything A published
        assert health["rejects"] == 1  # the tampered copy, and nothing else
        assert any(line.startswith("B quarantined a copy of 01-phishing-public-v2.xml altered after A signed "
                                   "it") and ": bad-digest (" in line for line in output), "".join(output)
        _dashboards_show_the_demos_traffic(workdir, port, tmp_path)
        with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/healthz") as response:
            assert json.load(response) == {"status": "up"}  # the feed listener says no more to anyone
        with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/feeds/public") as response:
            assert f'xmlns="{ATOM}"'.encode() in response.read()

        # kill -9 of B's bridge: the demo says so, keeps A running, and prints how to start B again.
        pid = int((workdir / "pids" / "bridge-b").read_text())
        os.kill(pid, signal.SIGKILL)
        assert _read_until(demo, output, "start it again with:", timeout=30), "".join(output)
        assert f"bridge-b (pid {pid}) was killed by signal 9 (SIGKILL). The other servers and bridges keep " \
               "running.\n" in output
        assert _read_until(demo, output, "  ", timeout=5)
        command = shlex.split(output[-1])
        assert command[-4:] == ["--workdir", str(workdir.resolve()), "--restart", "bridge-b"]
        assert demo.poll() is None and _health(32, port)["ready"]  # A still serves

        # Published at A while B is down; B catches up once started again with the printed command.
        document = tmp_path / "A-2024-0901.xml"
        document.write_bytes(SAMPLE.read_bytes().replace(b"A-2024-0101", b"A-2024-0901"))
        subprocess.run([sys.executable, "-m", "xmppbridge.cli", "publish", "-c", str(workdir / "a.yaml"),
                        str(document)], check=True, capture_output=True, timeout=60)
        restarted = subprocess.run(command, capture_output=True, text=True, timeout=150)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert "bridge-b is running again" in restarted.stdout
        deadline = time.monotonic() + 30
        while _health(33, port + 1)["entries"] != published + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _health(33, port + 1)["entries"] == published + 1
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, "".join(output) + rest
    assert "stopped." in rest
    _no_leftovers(workdir)  # the restarted bridge, not the demo's child, is stopped too
    _copy_to_postgresql_serves_the_same_feed(workdir / "data" / "b.sqlite", pg_store_url, published + 1)


def _dashboards_show_the_demos_traffic(workdir: Path, port: int, tmp_path: Path) -> None:
    """Each member's /dashboard as the demo's operator opens it in Chromium: B's charts show what it
    mirrored from A and the tampered copy it refused; A's what it published, its delays and its outbox's
    depth; each its peer, reachable. The screenshots (kept with the test's files) show the bars drawn."""
    passwords = dict(line.split(" ", 1) for line in (workdir / "credentials").read_text().splitlines()
                     if " operator:" in line)
    for name, feed in (("b", f"http://127.0.0.1:{port + 1}/"), ("a", f"http://127.0.0.1:{port}/")):
        signed_in = feed.replace("http://", f"http://{passwords[name]}@") + "dashboard"
        page = lxml.html.fromstring(_chromium(tmp_path, "--dump-dom", signed_in))
        assert page.findtext(".//h1") == "Dashboard", lxml.html.tostring(page)
        titles = page.xpath("//svg[@class='chart']//rect/title/text()")
        per_day = [m for m in map(STORED_TITLE.match, titles) if m and m["restriction"] in RESTRICTIONS]
        stored = sum(int(m["n"]) for m in per_day)
        assert stored == (8 if name == "b" else 9)  # A also holds the tampered copy it published
        assert page.xpath("//table[@class='members']//td[1]/text()") == ["csirt.a.test"]
        [peer] = page.xpath("//table[@class='peers']//tr[td]")
        assert peer.xpath(".//circle/@fill") == ["#33a02c"]  # reachable
        assert peer.xpath("string(td[2])") == ("pubsub.a.test" if name == "b" else "pubsub.b.test")
        if name == "b":
            assert "bad-digest: 1 refusals" in titles
            # how long A's items took to reach B, from the times their signed documents state
            assert page.xpath("//svg[@aria-label='arrival delay per day from csirt.a.test']//rect/title"
                              "[contains(., ' median: ')]")
        else:
            assert any(" median: " in t for t in titles) and any(" p95: " in t for t in titles)
            assert any(" peak: " in t for t in titles)  # the outbox's depth while A published
        shot = tmp_path / f"dashboard-{name}.png"
        _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,1800", signed_in)
        drawn = colours(shot.read_bytes())
        assert len(drawn) > 32  # not a blank page
        charted = (COLOURS["private"], COLOURS["public"], P95, "#ff9f00" if name == "a" else ARRIVAL_MEDIAN)
        assert all(drawn[rgb(colour)] > 50 for colour in charted), name  # the bars, as Chromium drew them


def _chromium(tmp_path: Path, *args: str) -> bytes:
    """Headless Debian Chromium; it signs in with the user and password of a URL, as with HTTP Basic."""
    done = subprocess.run(["/usr/bin/chromium", *CHROMIUM_FLAGS, "--disable-quic", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'chromium'}", *args],
                          capture_output=True, timeout=120, check=True)
    return done.stdout


def _copy_to_postgresql_serves_the_same_feed(demo_store: Path, url: str, entries: int) -> None:
    """The store the demo's B filled (mirrored entries, peers, cursors, chat state) moved with the command a
    member runs: every table verified, and the feed from PostgreSQL identical, URL by URL."""
    copied = subprocess.run([sys.executable, "-m", "xmppbridge.cli", "store", "copy", "--from",
                             str(demo_store), "--to", url], capture_output=True, text=True, timeout=120)
    assert copied.returncode == 0 and "copied and verified" in copied.stdout, copied.stdout + copied.stderr
    with Store(demo_store) as source, Store(url) as target:
        assert target.backend == "postgresql" and target.count_entries() == source.count_entries() == entries
        assert asyncio.run(crawl(source, target)) > 2 * entries  # feeds, entries, documents, archives


def test_the_demo_says_why_b_does_not_hold_the_samples(tmp_path: Path) -> None:
    """Something else holds B's s2s port and closes every connection (as a wrong service behind a port
    forward would): A cannot verify B's domain, so B's subscriptions fail and nothing arrives."""
    workdir = tmp_path / "demo"
    port = 28185 + 20 * _slot()
    impostor = socket.create_server((f"127.0.{_slot()}.35", 5269))
    threading.Thread(target=_close_every_connection, args=(impostor,), daemon=True).start()
    demo = _start_demo(workdir, (34, 35), port)
    output: list[str] = []
    try:
        assert not _read_until(demo, output, "READY ", timeout=150), "".join(output)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        impostor.close()
    text = "".join(output) + rest
    assert demo.returncode == 1, text
    assert "NOT READY: B holds 0 of the 8 incidents published at A." in text
    assert "iodef/public/reporting item csirt.a.test/A-2024-0101 (01-phishing-public-v2.xml): not received" \
        in text
    assert "FAIL peer pubsub.a.test reachable" in text  # doctor's report on B names the peer
    _no_leftovers(workdir)


def _close_every_connection(server: socket.socket) -> None:
    while True:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        connection.close()


@contextmanager
def members_ready(workdir: Path, hosts: tuple[int, ...], port: int, *options: str) -> Iterator[list[str]]:
    """``demo --members N OPTIONS``, one member per host, until READY (its output so far); stopped with ^C
    on the way out, which must leave no process behind."""
    demo = _start_demo(workdir, hosts, port, "--members", str(len(hosts)), *options)
    output: list[str] = []
    try:
        assert _read_until(demo, output, "READY ", timeout=240), "".join(output)
        assert output[-1] == "READY " + " ".join(f"http://127.0.0.1:{port + i}/"
                                                 for i in range(len(hosts))) + "\n"
        yield output
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, "".join(output) + rest
    _no_leftovers(workdir)


def test_a_demo_of_four_members_on_prosody_and_ejabberd_is_ready_once_each_mirrors_the_others(
        tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    port = 18684 + 20 * _slot()
    with members_ready(workdir, (204, 205, 206, 207), port, "--servers", "prosody,ejabberd") as output:
        text = "".join(output)
        net = f"127.0.{_slot()}"
        assert f"Prosody: a.test on {net}.204, c.test on {net}.206; ejabberd: b.test on {net}.205, " \
               f"d.test on {net}.207 (federated over s2s, full mesh)" in text
        published = sum(": published to " in line for line in output)
        assert published == 4 * 8  # every member published the 8 incidents of the samples
        assert f"Each of the 4 members mirrored what the other 3 published ({3 * published} incidents in " \
               "all), signatures verified." in text
        for host, offset in ((204, 0), (207, 3)):
            health = _health(host, port + offset)
            assert health["entries"] == published and health["rejects"] == 0  # its own 8 and 24 others'


def _shape_and_private(output: list[str], shape: str, members: int = 4) -> tuple[str, int]:
    """The output of a demo of ``members`` that says it runs ``shape`` and where each member published the
    samples' 8 incidents: the text, and how many of each member's 8 are private."""
    text = "".join(output)
    assert f"(federated over s2s, {shape})" in text
    published = [line for line in output if ": published to " in line]
    assert len(published) == members * 8
    return text, sum(" to iodef/private/" in line for line in published) // members


def test_a_demo_of_a_hub_and_three_spokes_is_ready_once_each_holds_what_the_hub_relays(
        tmp_path: Path) -> None:
    """``--topology hub``: a follows b, c and d and relays what each publishes (private aside) to the
    other two, which follow a alone; READY once every spoke holds the others' items as a's copies."""
    workdir = tmp_path / "demo"
    port = 18688 + 20 * _slot()
    with members_ready(workdir, (244, 245, 246, 247), port, "--topology", "hub") as output:
        text, private = _shape_and_private(output, "hub and spoke around a.test")
        # By hand: every spoke gets a's 8 from a, and the other two spokes' relayable ones from a.
        relayed = 3 * 2 * (8 - private)
        assert f"Each of the 4 members mirrored what the other 3 published ({3 * 8 + 3 * 8 + relayed} " \
               f"incidents in all, {relayed} of them relayed by A with the custody chain publisher then " \
               "A)" in text
        assert f"A did not relay the {3 * private} private incidents it received" in text
        hub, spoke = _health(244, port), _health(247, port + 3)
        # The hub: its own 8, the spokes' 24, and its relayed copies of theirs.
        assert (hub["entries"], hub["rejects"]) == (8 + 3 * 8 + 3 * (8 - private), 3 * private)
        assert (spoke["entries"], spoke["rejects"]) == (8 + 8 + 2 * (8 - private), 0)
        with Store(workdir / "data" / "d.sqlite") as store:
            [entry] = [e for e in store.entries(limit=100) if e.incident.id == "B-2024-0101"]
        assert entry.service == "pubsub.a.test"
        assert [(c.role, c.member) for c in entry.custody] == [("originator", "b"), ("relay", "a")]


def test_a_demo_of_a_tree_of_two_hubs_is_ready_once_each_spoke_holds_the_other_regions_items(
        tmp_path: Path) -> None:
    """``--topology tree``: hubs a and b follow each other, c is a's spoke and d b's. What c publishes
    reaches d relayed by a, then b, with the custody chain c, a, b; READY once every member holds it all."""
    workdir = tmp_path / "demo"
    port = 18692 + 20 * _slot()
    with members_ready(workdir, (208, 209, 210, 211), port, "--topology", "tree") as output:
        text, private = _shape_and_private(output, "tree of hubs around a.test and b.test")
        shared = 8 - private
        # By hand. Straight from the publisher: each hub gets the other hub's 8 and its spoke's 8, each
        # spoke its hub's 8. Relayed: each hub gets the other spoke's shared ones (once); each spoke the
        # other hub's shared ones (once) and the other spoke's (twice over).
        direct, relayed = 2 * (8 + 8) + 2 * 8, 2 * shared + 2 * shared + 2 * shared
        assert f"Each of the 4 members mirrored what the other 3 published ({direct + relayed} incidents " \
               f"in all, {relayed} of them relayed by A and B with the custody chain publisher then each " \
               "hub it passed)" in text
        for hub in "AB":  # its own spoke's private ones, and the other hub's
            assert f"{hub} did not relay the {2 * private} private incidents it received" in text
        with Store(workdir / "data" / "d.sqlite") as store:
            [entry] = [e for e in store.entries(limit=100) if e.incident.id == "C-2024-0101"]
        assert entry.service == "pubsub.b.test"
        assert [(c.role, c.member) for c in entry.custody] == [("originator", "c"), ("relay", "a"),
                                                               ("relay", "b")]


def test_a_demo_of_a_ring_of_four_hubs_is_ready_once_each_spoke_holds_every_region_s_items(
        tmp_path: Path) -> None:
    """``--topology ring --hubs 4``: hubs a, b, c and d on a ring, each following its two neighbours; e is
    a's spoke, f b's, g c's, h d's. What e publishes reaches g relayed by a, then b or d, then c, whichever
    way came first; READY once every member holds it all, by one of its ways."""
    workdir = tmp_path / "demo"
    port = 23100 + 20 * _slot()
    hosts = (212, 213, 214, 215, 216, 217, 218, 219)
    with members_ready(workdir, hosts, port, "--topology", "ring", "--hubs", "4") as output:
        text, private = _shape_and_private(output, "ring of hubs around a.test, b.test, c.test and d.test", 8)
        shared = 8 - private
        # By hand. Straight from the publisher: each hub gets its two neighbours' 8 and its spoke's 8, each
        # spoke its hub's 8. Relayed: each hub gets the far hub's shared ones and the other three spokes';
        # each spoke the other three hubs' and the other three spokes'.
        direct, relayed = 4 * (2 * 8 + 8) + 4 * 8, 4 * (1 + 3) * shared + 4 * (3 + 3) * shared
        assert f"Each of the 8 members mirrored what the other 7 published ({direct + relayed} incidents " \
               f"in all, {relayed} of them relayed by A, B, C and D with the custody chain publisher then " \
               "each hub it passed)" in text
        for hub in "ABCD":  # its own spoke's private ones, and its two neighbours'
            assert f"{hub} did not relay the {3 * private} private incidents it received" in text
        with Store(workdir / "data" / "g.sqlite") as store:
            [entry] = [e for e in store.entries(limit=100) if e.incident.id == "E-2024-0101"]
        assert entry.service == "pubsub.c.test"
        assert [c.member for c in entry.custody] in (["e", "a", "b", "c"], ["e", "a", "d", "c"])
