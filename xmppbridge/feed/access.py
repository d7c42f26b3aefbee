"""Feed users and the principal of a request: who they are and the rights (``policy.rights``) they hold.

Pure data; the HTTP shell asks ``Principal`` before it touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xmppbridge.policy.rights import Rights


@dataclass(frozen=True)
class User:
    """A configured user. Credentials are stored hashed only (see ``feed.auth``)."""

    name: str
    read: Rights
    write: Rights = field(default_factory=Rights)
    password_hash: str | None = None
    token_hash: str | None = None
    cert_subject: str | None = None  # RFC 4514 subject of a client certificate that logs in as this user
    operator: bool = False  # may see /metrics and the detailed /healthz on the feed listener


@dataclass(frozen=True)
class Principal:
    """Whoever sent a request: a user, or nobody (``name`` None) with the anonymous rights."""

    name: str | None
    read: Rights
    write: Rights = field(default_factory=Rights)
    operator: bool = False

    @property
    def anonymous(self) -> bool:
        return self.name is None

    def may_read(self, restriction: str, purpose: str) -> bool:
        return self.read.allows(restriction, purpose)

    def may_write(self, restriction: str, purpose: str) -> bool:
        return self.write.allows(restriction, purpose)
