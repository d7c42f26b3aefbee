"""What every local XMPP server of the demo and the tests has, whichever software runs it."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LocalServer:
    """One XMPP domain on its own loopback address, with the bridge's component and pubsub beside it."""

    domain: str  # e.g. "a.test"; the bridge is bridge.<domain>, pubsub is pubsub.<domain>
    ip: str  # its own loopback address, e.g. "127.0.0.2"
    workdir: Path
    secret: str
    peers: dict[str, str] = field(default_factory=dict)  # other domains -> their loopback address
    component_port: int = 5347
    c2s_port: int = 5222
    s2s_port: int = 5269
    max_items: int = 5000  # see deploy/prosody/domain.cfg.lua.in
    process: subprocess.Popen[bytes] | None = None

    @property
    def bridge_jid(self) -> str:
        return f"bridge.{self.domain}"

    @property
    def pubsub_jid(self) -> str:
        return f"pubsub.{self.domain}"


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host``:``port`` (a server is listening)."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
