"""Helpers for the integration tests: a running two-domain consortium and ways to poke at it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from xmppbridge.demo.consortium import Consortium

T = TypeVar("T")


def loopback_consortium(workdir: Path, hosts: dict[str, int], *, feed_port_base: int,
                        discovery_interval: float, servers: Mapping[str, str] | None = None) -> Consortium:
    """Members on 127.0.<slot>.<host>, feeds from ``feed_port_base`` + 20 * slot; ``servers``: members
    on ejabberd rather than Prosody (``Consortium``).

    XMPPBRIDGE_TEST_SLOT=N (default 0) moves every suite's addresses and ports, so that the test runs of
    several working copies on one machine do not meet each other's servers.
    """
    slot = int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))
    return Consortium(workdir, {name: f"127.0.{slot}.{host}" for name, host in hosts.items()},
                      feed_port_base=feed_port_base + 20 * slot, discovery_interval=discovery_interval,
                      servers=servers)


@contextmanager
def running(consortium: Consortium, *, before_bridges: Callable[[], None] = lambda: None,
            timeout: float = 120.0) -> Iterator[Consortium]:
    """Servers started, ``before_bridges`` run (e.g. account creation), every member's bridge started and
    ready; everything stopped on the way out, also when starting failed half-way."""
    try:
        consortium.start_servers()
        before_bridges()
        for name in consortium.members:
            consortium.start_bridge(name, timeout)
        yield consortium
    finally:
        consortium.stop()


def eventually(probe: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.1,
               what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
