"""Chat accounts for people on the demo's XMPP servers, and the file that tells them how to connect.

``var/demo/xmpp-credentials`` gets one ``<jid> <password> <host:port>`` line per account, the host and
port of the server's c2s listener (TLS with a self-signed certificate: tell the client to trust it).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from xmppbridge.demo.ejabberd import EjabberdServer
from xmppbridge.demo.prosody import ProsodyServer


@dataclass(frozen=True)
class Account:
    jid: str
    password: str
    host: str
    port: int

    @property
    def user(self) -> str:
        return self.jid.partition("@")[0]

    @property
    def domain(self) -> str:
        return self.jid.partition("@")[2]


class ChatServer(Protocol):
    """A demo XMPP server that can create accounts (``ProsodyServer`` via ``prosody_registrar``,
    ``EjabberdServer``)."""

    @property
    def domain(self) -> str: ...

    @property
    def ip(self) -> str: ...

    @property
    def c2s_port(self) -> int: ...

    def register(self, user: str, password: str) -> None: ...


def register_prosody(config: Path, user: str, domain: str, password: str) -> None:
    """``prosodyctl register`` against the server's own config (it writes the account to its data_path)."""
    binary = shutil.which("prosodyctl")
    if binary is None:
        raise RuntimeError("prosodyctl is not installed: apt-get install prosody")
    result = subprocess.run([binary, "--config", str(config), "register", user, domain, password],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"prosodyctl register {user}@{domain} failed: {result.stderr or result.stdout}")


@dataclass(frozen=True)
class ProsodyAccounts:
    """A ``ChatServer`` view of a running ``ProsodyServer``."""

    server: ProsodyServer

    @property
    def domain(self) -> str:
        return self.server.domain

    @property
    def ip(self) -> str:
        return self.server.ip

    @property
    def c2s_port(self) -> int:
        return self.server.c2s_port

    def register(self, user: str, password: str) -> None:
        register_prosody(self.server.workdir / "prosody.cfg.lua", user, self.server.domain, password)


def chat_server(server: ProsodyServer | EjabberdServer) -> ChatServer:
    """Where a member's accounts are made: ejabberd registers them itself, Prosody through prosodyctl."""
    return ProsodyAccounts(server) if isinstance(server, ProsodyServer) else server


def create_accounts(server: ChatServer, users: Iterable[str]) -> list[Account]:
    """Register each user on ``server`` with a fresh random password."""
    accounts = []
    for user in users:
        password = secrets.token_urlsafe(12)
        server.register(user, password)
        accounts.append(Account(f"{user}@{server.domain}", password, server.ip, server.c2s_port))
    return accounts


def write_credentials(path: Path, accounts: Iterable[Account]) -> None:
    path.write_text("".join(f"{a.jid} {a.password} {a.host}:{a.port}\n" for a in accounts))
    path.chmod(0o600)

