"""``xmppbridge serve-feed`` processes for tests: started as the operator starts them, each on its own
address, stopped (and waited for) on the way out; raw HTTP that follows no redirects."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit

from xmppbridge.demo.consortium import stop_process


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    def validators(self) -> dict[str, str | None]:
        """What must be the same whichever process answered."""
        names = ("ETag", "Last-Modified", "Content-Type", "Cache-Control", "Location", "Vary")
        return {name: self.headers.get(name) for name in names}


@dataclass
class ServedFeed:
    """One running serve-feed process: where it listens, its operator listener, its log."""

    url: str  # http://host:port/
    operator_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, headers: dict[str, str] | None = None, *, method: str = "GET",
            body: bytes | None = None) -> Reply:
        return request(self.url + path.lstrip("/"), headers, method=method, body=body)

    def health(self) -> dict[str, object]:
        try:
            reply = request(self.operator_url + "healthz", timeout=2)
        except OSError:
            return {}
        return json.loads(reply.body) if reply.status == 200 else {}

    def log_tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else "(no log)"


def request(url: str, headers: dict[str, str] | None = None, *, method: str = "GET",
            body: bytes | None = None, timeout: float = 60) -> Reply:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def serve_feed_command(config: Path, listen: str, operator: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "xmppbridge.cli", "serve-feed", "-c", str(config), "--listen", listen,
            "--operator-listen", operator, *extra]


def start_feed(config: Path, host: str, port: int, log: Path, *extra: str, listen_port: int | None = None,
               timeout: float = 30.0) -> ServedFeed:
    """One serve-feed on ``host:port`` (or ``listen_port``, shared with --reuse-port), its operator
    listener on port + 1000; returns once its /healthz says it serves the feed."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            serve_feed_command(config, f"{host}:{listen_port or port}", f"{host}:{port + 1000}", *extra),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    feed = ServedFeed(f"http://{host}:{listen_port or port}/", f"http://{host}:{port + 1000}/", process, log)
    deadline = time.monotonic() + timeout
    try:
        while feed.health().get("pid") != process.pid:  # its own listener, not another one's
            if process.poll() is not None:
                raise RuntimeError(f"serve-feed exited with {process.returncode}:\n{feed.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve-feed not up within {timeout} s:\n{feed.log_tail()}")
            time.sleep(0.05)
    except BaseException:
        stop_feed(feed)
        raise
    return feed


def stop_feed(feed: ServedFeed) -> None:
    if feed.process.poll() is None:
        stop_process(feed.process)


@contextmanager
def serve_feeds(config: Path, host: str, ports: Sequence[int], workdir: Path, *extra: str,
                listen_port: int | None = None) -> Iterator[list[ServedFeed]]:
    """A serve-feed per port, all stopped on the way out (also when one failed to start)."""
    feeds: list[ServedFeed] = []
    try:
        for port in ports:
            feeds.append(start_feed(config, host, port, workdir / f"serve-feed-{port}.log", *extra,
                                    listen_port=listen_port))
        yield feeds
    finally:
        for feed in feeds:
            stop_feed(feed)
