"""The PostgreSQL lease (``leadership.AdvisoryLease``) on a private cluster: one holder at a time, the
lock freed when its holder is killed, and an active instance that loses its session fences itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import Cluster, private_cluster
from xmppbridge.lease import lease_key
from xmppbridge.process.leadership import AdvisoryLease, Leadership, LeaseLost
from xmppbridge.store import Store

KEY = lease_key("bridge.b.test")
REPO = Path(__file__).resolve().parents[1]

# A lease holder in a process of its own: says "acquired" once it holds the lock, then keeps it.
HOLDER = """
import sys, time
from xmppbridge.process.leadership import AdvisoryLease
lease = AdvisoryLease(sys.argv[1], int(sys.argv[2]), sys.argv[3])
while not lease.acquire():
    time.sleep(0.2)
print("acquired", flush=True)
while True:
    lease.confirm()
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    slot = int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))
    with private_cluster(host=f"127.0.{slot}.122") as running:
        yield running


def holder(cluster: Cluster, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLDER, cluster.url, str(KEY), name], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def said_acquired(process: subprocess.Popen[str]) -> bool:
    assert process.stdout is not None
    return process.stdout.readline().strip() == "acquired"


def test_one_holder_at_a_time_and_the_killed_holders_lock_goes_to_the_other(cluster: Cluster) -> None:
    first = holder(cluster, "first")
    try:
        assert said_acquired(first)
        second = holder(cluster, "second")
        try:
            probe = AdvisoryLease(cluster.url, KEY, "probe")
            assert not probe.acquire()  # held by the first
            probe.release()
            first.kill()  # kill -9: its kernel closes the session's socket, the server frees the lock
            first.wait()
            assert said_acquired(second)
            assert not probe.acquire()  # now the second's
            probe.release()
        finally:
            second.kill()
            second.wait()
    finally:
        first.kill()
        first.wait()


def test_each_bridge_has_its_own_lease(cluster: Cluster) -> None:
    b = AdvisoryLease(cluster.url, KEY, "b")
    a = AdvisoryLease(cluster.url, lease_key("bridge.a.test"), "a")
    try:
        assert b.acquire() and a.acquire()
        b.confirm()
        a.confirm()
    finally:
        a.release()
        b.release()


def test_a_lost_session_is_reported_lost(cluster: Cluster) -> None:
    lease = AdvisoryLease(cluster.url, KEY, "lost")
    assert lease.acquire()
    try:
        with AdvisoryLease(cluster.url, KEY, "admin")._connect() as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE application_name = 'xmppbridge lease lost'")
        with pytest.raises(LeaseLost):
            lease.confirm()
    finally:
        lease.release()


class Blackhole:
    """A TCP relay to the cluster that can go silent the way a lost network does: nothing is forwarded
    or refused any more, and both sides stay open (so the server keeps the session, as it would until
    its keepalives give up) until ``server_gives_up``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.silent = threading.Event()
        self.sockets: list[socket.socket] = []
        self.upstreams: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.silent.is_set():
                continue  # a new attempt meets silence too
            server = socket.create_connection(self.target)
            self.upstreams.append(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self.silent.is_set():
            try:
                data = source.recv(65536)
                if not data or self.silent.is_set():
                    return
                sink.sendall(data)
            except OSError:
                return

    def server_gives_up(self) -> None:
        for server in self.upstreams:
            _hang_up(server)

    def close(self) -> None:
        _hang_up(self.listener)
        for each in (*self.sockets, *self.upstreams):
            _hang_up(each)


def _hang_up(sock: socket.socket) -> None:
    """shutdown() first: close() alone leaves a socket another thread is reading from open (Linux)."""
    with contextlib.suppress(OSError):  # not connected (the listener), or already gone
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def test_an_active_instance_whose_link_goes_silent_fences_itself(cluster: Cluster, tmp_path: Path) -> None:
    """No answer to its confirmations, no error either: it stops acting on its own (the server, which
    still holds the session, would free the lock only later: ``lease.TERMS`` keep it so)."""
    relay = Blackhole(cluster.host, cluster.port)
    user = cluster.url.split("://", 1)[1].split("@", 1)[0]
    url = f"postgresql://{user}@{cluster.host}:{relay.port}/postgres"
    events: list[str] = []
    other = AdvisoryLease(cluster.url, KEY, "other")

    async def scenario() -> None:
        until = asyncio.Event()
        acting = asyncio.Event()

        async def act() -> None:
            events.append("act")
            acting.set()
            try:
                await asyncio.Event().wait()
            finally:
                events.append("stopped acting")

        with Store(tmp_path / "s.sqlite") as store:
            leadership = Leadership(AdvisoryLease(url, KEY, "silent"), store, "silent")
            running = asyncio.ensure_future(leadership.run(act, lambda: events.append("fenced"), until))
            await asyncio.wait_for(acting.wait(), 30)
            assert leadership.active and not await asyncio.to_thread(other.acquire)
            relay.silent.set()
            while "stopped acting" not in events:
                await asyncio.sleep(0.1)
            assert not leadership.active
            relay.server_gives_up()
            while not await asyncio.to_thread(other.acquire):
                await asyncio.sleep(0.2)
            events.append("other acquired")
            assert not leadership.active  # it cannot get it back through the silent link
            until.set()
            await asyncio.wait_for(running, 30)

    try:
        asyncio.run(scenario())
    finally:
        other.release()
        relay.close()
    assert events == ["act", "fenced", "stopped acting", "other acquired"]
