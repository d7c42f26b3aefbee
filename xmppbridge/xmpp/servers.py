"""Which server the component connects to next, and after how long: the pure part of failover between
the nodes of a clustered XMPP server (``component.servers``, README.md "ejabberd cluster").

Every node of an ejabberd cluster accepts the component and routes its JID for the whole cluster, so
any node will do. The bridge keeps one connection; when it fails, or cannot be made, the next address
in the list is tried: a dead node is left at once, instead of being retried with a growing delay while
its peers are up. The delay grows only with each round of the list that fails entirely.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

RECONNECT_MAX_DELAY = 30.0


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, default_port: int = 5347) -> ServerAddress:
    """``host:port``, ``host`` (the default component port) or ``[v6 address]:port``; ValueError says what
    is wrong."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not host or not bracket or rest and not rest.startswith(":"):
            raise ValueError("an IPv6 address goes in brackets, as [::1]:5347")
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:
        raise ValueError("an IPv6 address goes in brackets, as [::1]:5347")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError("has no host name")
    if not port_text:
        return ServerAddress(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a TCP port number")
    return ServerAddress(host, int(port_text))


def backoff_delay(attempt: int) -> float:
    """Capped exponential backoff with jitter, so that bridges restarted together do not reconnect in
    lockstep: 0.5-1 s after the first failure, doubling up to 15-30 s."""
    return random.uniform(0.5, 1.0) * min(RECONNECT_MAX_DELAY, 2.0 ** min(attempt - 1, 10))


class Rotation:
    """The servers in order; ``failed`` moves to the next one and says how long to wait before trying it."""

    def __init__(self, servers: tuple[ServerAddress, ...]) -> None:
        if not servers:
            raise ValueError("no server address")
        self.servers = servers
        self._index = 0
        self._failures = 0  # since the last established connection

    @property
    def current(self) -> ServerAddress:
        return self.servers[self._index]

    @property
    def failures(self) -> int:
        return self._failures

    def connected(self) -> None:
        self._failures = 0

    def failed(self) -> float:
        """The connection to ``current`` was lost or could not be made: the next server becomes current;
        the delay before trying it grows with each whole round of failures (a lone server: each time)."""
        self._failures += 1
        self._index = (self._index + 1) % len(self.servers)
        return backoff_delay(math.ceil(self._failures / len(self.servers)))
