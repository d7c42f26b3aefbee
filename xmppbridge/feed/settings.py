"""Feed settings: plain data, importable without aiohttp, and the parser of the config's ``feed:`` section.

The safety rules live here, so that no config can start a feed that leaks: anonymous readers get more
than public collections only on a loopback listen address, and passwords or tokens never cross the
network in clear.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from xmppbridge.feed.access import User
from xmppbridge.feed.auth import check_password_hash, check_token_hash
from xmppbridge.feed.throttle import ThrottleSettings
from xmppbridge.iodef.markings import RESTRICTIONS
from xmppbridge.policy.may import Policy
from xmppbridge.policy.rights import Rights

if TYPE_CHECKING:  # config imports this module to parse its feed section
    from xmppbridge.configfile import ConfigReader

DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True)
class TlsSettings:
    cert: Path  # PEM certificate chain of the server
    key: Path  # its PEM private key
    client_ca: Path | None = None  # PEM CA certificates; when set, clients may log in with certificates


@dataclass(frozen=True)
class FeedSettings:
    base_url: str  # public URL of the feed server's root, e.g. "http://127.0.0.1:8081/"
    # Restrictions anyone may read without authenticating. Any iterable is accepted and frozen.
    anonymous_restrictions: frozenset[str] = field(default_factory=lambda: frozenset({"public"}))
    page_size: int = 50  # entries per feed page unless the client asks for another count
    max_page_size: int = 500
    # Changes per RFC 5005 archive document. Archive N holds sequence numbers (N-1)*size+1 .. N*size,
    # so changing this renumbers every archive: choose it once per deployment.
    archive_size: int = 100
    author: str = "xmppbridge"  # atom:author/atom:name of the feeds
    users: tuple[User, ...] = ()
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    tls: TlsSettings | None = None
    write_timeout: float = 30.0  # seconds an AtomPub request waits for the bridge to publish
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)  # failed-login backoff

    def __post_init__(self) -> None:
        restrictions = frozenset(_as_iterable(self.anonymous_restrictions))
        unknown = sorted(restrictions - set(RESTRICTIONS))
        if unknown:
            raise ValueError(
                f"anonymous_restrictions: unknown restriction(s) {', '.join(unknown)};"
                f" use {', '.join(RESTRICTIONS)}"
            )
        object.__setattr__(self, "anonymous_restrictions", restrictions)
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError(f"page_size must be between 1 and max_page_size ({self.max_page_size}),"
                             f" not {self.page_size}")
        if self.archive_size < 1:
            raise ValueError(f"archive_size must be at least 1, not {self.archive_size}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an absolute http(s) URL, not {self.base_url!r}")
        names = [user.name for user in self.users]
        if len(set(names)) != len(names):
            raise ValueError("users: every user needs a name of its own")

    @property
    def anonymous_rights(self) -> Rights:
        return Rights.restrictions_of(self.anonymous_restrictions)


def feed_policy(settings: FeedSettings) -> Policy:
    """The part of the policy this section holds: the users' rights and the anonymous ones."""
    return Policy(readers=MappingProxyType({u.name: u.read for u in settings.users}),
                  writers=MappingProxyType({u.name: u.write for u in settings.users}),
                  anonymous=settings.anonymous_rights)


def _as_iterable(value: Iterable[str] | str) -> Iterable[str]:
    return [value] if isinstance(value, str) else value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def feed_settings(r: ConfigReader, members: Mapping[str, Rights] | None = None) -> FeedSettings:
    """The ``feed:`` section of a config file; errors name the file and key. ``members``: each registry
    member's rights, for ``member:<name>`` read grants (``Rights.parse``)."""
    host, _, port = r.get("feed.listen", DEFAULT_LISTEN).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise r.error("feed.listen", "must be host:port, e.g. 127.0.0.1:8080")
    tls = _tls(r)
    base_url = r.get("feed.base_url", f"{'https' if tls else 'http'}://{host}:{port}/")
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise r.error("feed.base_url", "must be an http:// or https:// URL")
    if tls and not base_url.startswith("https://"):
        raise r.error("feed.base_url", "must be an https:// URL when feed.tls is set")
    if not base_url.endswith("/"):
        base_url += "/"

    anonymous = r.get("feed.anonymous_restrictions", ["public"], list)
    unknown = set(anonymous) - set(RESTRICTIONS)
    if unknown:
        raise r.error("feed.anonymous_restrictions", f"unknown restriction(s) {sorted(unknown)}")
    if set(anonymous) - {"public"} and not is_loopback(host):
        # Anonymous HTTP reading of need-to-know or private items would leak them to anyone who
        # can reach the port; only tolerate it where nobody else can connect.
        raise r.error("feed.anonymous_restrictions",
                      "non-public restrictions may be readable anonymously only on a loopback listen address")

    users = _users(r, tls, members or {})
    if any(u.password_hash or u.token_hash for u in users) and tls is None and not is_loopback(host):
        raise r.error("feed.users", "passwords and tokens would cross the network in clear: set feed.tls, or "
                                    "listen on a loopback address behind a TLS-terminating proxy")
    page_size = r.get("feed.page_size", 50, int)
    max_page_size = r.get("feed.max_page_size", 500, int)
    if not 1 <= page_size <= max_page_size:
        raise r.error("feed.page_size", f"must be between 1 and feed.max_page_size ({max_page_size})")
    archive_size = r.get("feed.archive_size", 100, int)
    if archive_size < 1:
        raise r.error("feed.archive_size", "must be at least 1")
    timeout = float(r.get("feed.write_timeout", 30, (int, float)))
    if timeout <= 0:
        raise r.error("feed.write_timeout", "must be a positive number of seconds")
    return FeedSettings(
        base_url=base_url,
        anonymous_restrictions=frozenset(anonymous),
        page_size=page_size,
        max_page_size=max_page_size,
        archive_size=archive_size,
        author=r.get("feed.author", "xmppbridge"),
        users=users,
        listen_host=host,
        listen_port=int(port),
        tls=tls,
        write_timeout=timeout,
        throttle=_throttle(r),
    )


_BACKOFF_KINDS: dict[str, type | tuple[type, ...]] = {"free_failures": int, "hash_slots": int,
                                                     "trusted_proxies": list}


def _throttle(r: ConfigReader) -> ThrottleSettings:
    """``feed.login_backoff``: every key optional, the defaults of ``ThrottleSettings``."""
    spec = r.get("feed.login_backoff", {}, dict)
    known = set(ThrottleSettings.__dataclass_fields__) - {"max_entries"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise r.error("feed.login_backoff", f"unknown key(s) {', '.join(map(str, unknown))};"
                                            f" use {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key in spec:
        kind = _BACKOFF_KINDS.get(key, (int, float))
        value = r.get(f"feed.login_backoff.{key}", None, kind)
        if isinstance(value, bool):
            raise r.error(f"feed.login_backoff.{key}", f"must be a number, got {value!r}")
        if value is not None:
            values[key] = value
    try:
        return ThrottleSettings(**values)
    except ValueError as exc:
        raise r.error("feed.login_backoff", str(exc)) from None


def _tls(r: ConfigReader) -> TlsSettings | None:
    if r.get("feed.tls", None, dict) is None:
        return None
    client_ca = r.get("feed.tls.client_ca", None)
    return TlsSettings(
        cert=r.path("feed.tls.cert", r.get("feed.tls.cert")),
        key=r.path("feed.tls.key", r.get("feed.tls.key")),
        client_ca=None if client_ca is None else r.path("feed.tls.client_ca", client_ca),
    )


def _users(r: ConfigReader, tls: TlsSettings | None, members: Mapping[str, Rights]) -> tuple[User, ...]:
    users = []
    for name, spec in r.get("feed.users", {}, dict).items():
        key = f"feed.users.{name}"
        if not isinstance(spec, dict):
            raise r.error(key, "must be a mapping with password_hash, token_hash or client_cert_subject,"
                               " and read/write rights")
        rights: dict[str, Rights] = {}
        for kind in ("read", "write"):
            grants: Any = r.get(f"{key}.{kind}", [], list)
            try:
                rights[kind] = Rights.parse(grants, members if kind == "read" else None)
            except ValueError as exc:
                raise r.error(f"{key}.{kind}", str(exc)) from None
        user = User(
            name=str(name),
            read=rights["read"] | rights["write"],  # whoever may publish something may read it back
            write=rights["write"],
            password_hash=r.get(f"{key}.password_hash", None),
            token_hash=r.get(f"{key}.token_hash", None),
            cert_subject=r.get(f"{key}.client_cert_subject", None),
            operator=r.get(f"{key}.operator", False, bool),
        )
        for field_name, check in (("password_hash", check_password_hash), ("token_hash", check_token_hash)):
            value = getattr(user, field_name)
            if value is not None:
                try:
                    check(value)
                except ValueError as exc:
                    raise r.error(f"{key}.{field_name}", str(exc)) from None
        if not (user.password_hash or user.token_hash or user.cert_subject):
            raise r.error(key, "needs password_hash, token_hash or client_cert_subject to log in with")
        if user.cert_subject and (tls is None or tls.client_ca is None):
            raise r.error(f"{key}.client_cert_subject",
                          "needs feed.tls.client_ca to verify client certificates")
        users.append(user)
    return tuple(users)
