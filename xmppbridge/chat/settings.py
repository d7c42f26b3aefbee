"""The ``chat:``, ``rooms:``, ``admins:``, ``metrics:`` and ``logging:`` sections of a bridge config.

Parsed with the config's ``ConfigReader`` so that every error names the file and the key. Rooms follow
one safety rule: a room gets public summaries only, unless its ``allow`` list names the restriction
(people join rooms without anyone checking the consortium's allowlists).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from xmppbridge.feed.settings import is_loopback
from xmppbridge.iodef.markings import RESTRICTIONS
from xmppbridge.policy.may import Policy
from xmppbridge.policy.rights import Rights

if TYPE_CHECKING:
    from xmppbridge.configfile import ConfigReader


@dataclass(frozen=True)
class RateLimit:
    burst: int = 10  # commands a JID may send at once
    per_minute: float = 30.0  # and then, on average


@dataclass(frozen=True)
class RoomSettings:
    room: str  # bare room JID, e.g. incidents@rooms.a.test
    nick: str
    rights: Rights  # what to post: the filter, narrowed to public + ``allow`` (see room_rights)
    password: str | None = None


@dataclass(frozen=True)
class OperatorSettings:
    """Everything issue 6 adds to a bridge config, in one value for ``process/run.py``."""

    # chat.readers: bare JID or "*@domain" -> the rights it holds beyond public (asked via policy.may)
    readers: Mapping[str, Rights] = field(default_factory=lambda: MappingProxyType({}))
    rate: RateLimit = field(default_factory=RateLimit)
    max_results: int = 10
    rooms: tuple[RoomSettings, ...] = ()
    admins: frozenset[str] = frozenset()
    metrics: bool = True  # serve /metrics (operator listener, and operator users on the feed listener)
    # host, port of the operator listener (/metrics, detailed /healthz); None: none (metrics.listen: null)
    metrics_listen: tuple[str, int] | None = ("127.0.0.1", 9180)
    log_format: str = "text"  # or "json": one JSON object per line (logging_setup)


def room_rights(post: Rights, allow: frozenset[str]) -> Rights:
    """The filter, without any restriction other than public that ``allow`` does not name: ``post: [all]``
    alone never lets need-to-know or private summaries into a room."""
    permitted = allow | {"public"}
    return Rights(frozenset((r, p) for r, p in post.pairs if r in permitted))


def chat_policy(settings: OperatorSettings, base: Policy | None = None) -> Policy:
    """``base`` (e.g. the feed's part) with the part of the policy these sections hold: chat readers,
    rooms and admins."""
    rooms = MappingProxyType({room.room: room.rights for room in settings.rooms})
    return replace(base or Policy(), chat=settings.readers, rooms=rooms, admins=settings.admins)


def operator_settings(r: ConfigReader, members: Mapping[str, Rights] | None = None) -> OperatorSettings:
    """``members``: each registry member's rights, for ``member:<name>`` grants in ``chat.readers``."""
    grants: dict[str, Rights] = {}
    for grant, jids in r.get("chat.readers", {}, dict).items():
        key = f"chat.readers.{grant}"
        rights = _rights(r, key, [grant], members or {})
        if not isinstance(jids, list) or not all(isinstance(j, str) and "@" in j for j in jids):
            raise r.error(key, "must be a list of bare JIDs (user@domain) or *@domain")
        for jid in jids:
            jid = jid.lower()
            grants[jid] = grants.get(jid, Rights()) | rights
    rate = RateLimit(burst=r.get("chat.rate_limit.burst", 10, int),
                     per_minute=float(r.get("chat.rate_limit.per_minute", 30, (int, float))))
    if rate.burst < 1 or rate.per_minute <= 0:
        raise r.error("chat.rate_limit", "burst must be at least 1 and per_minute positive")
    max_results = r.get("chat.max_results", 10, int)
    if not 1 <= max_results <= 50:
        raise r.error("chat.max_results", "must be between 1 and 50")
    log_format = r.get("logging.format", "text")
    if log_format not in ("text", "json"):
        raise r.error("logging.format", "must be 'text' or 'json'")
    admins = r.get("admins", [], list)
    if not all(isinstance(a, str) and "@" in a and "/" not in a for a in admins):
        raise r.error("admins", "must be a list of bare JIDs (user@domain)")
    return OperatorSettings(
        readers=MappingProxyType(grants),
        rate=rate,
        max_results=max_results,
        rooms=tuple(_room(r, i, spec) for i, spec in enumerate(r.get("rooms", [], list))),
        admins=frozenset(a.lower() for a in admins),
        metrics=r.get("metrics.enabled", True, bool),
        metrics_listen=_metrics_listen(r),
        log_format=log_format,
    )


def _room(r: ConfigReader, index: int, spec: Any) -> RoomSettings:
    key = f"rooms[{index}]"
    if not isinstance(spec, dict) or not isinstance(spec.get("room"), str) or "@" not in spec["room"]:
        raise r.error(key, "must be a mapping with 'room' (a room JID such as incidents@rooms.a.test),"
                           " 'post' (what to post, e.g. [public]) and optionally 'nick', 'allow', 'password'")
    allow = spec.get("allow", [])
    if not isinstance(allow, list) or not set(allow) <= set(RESTRICTIONS):
        raise r.error(f"{key}.allow", f"must be a list of restrictions ({', '.join(RESTRICTIONS)})")
    post = _rights(r, f"{key}.post", spec.get("post", ["public"]))
    named = {grant.partition("/")[0] for grant in spec.get("post", ["public"])}
    refused = sorted(named & set(RESTRICTIONS) - set(allow) - {"public"})
    if refused:
        # Said out loud rather than silently posting nothing of them.
        raise r.error(f"{key}.post", f"names {', '.join(refused)}, which this room may only receive when "
                                     f"listed in {key}.allow")
    return RoomSettings(room=spec["room"].lower(), nick=str(spec.get("nick", "xmppbridge")),
                        rights=room_rights(post, frozenset(allow)), password=spec.get("password"))


def _rights(r: ConfigReader, key: str, grants: Any, members: Mapping[str, Rights] | None = None) -> Rights:
    if not isinstance(grants, list):
        raise r.error(key, "must be a list of grants such as public, need-to-know/mitigation or all")
    try:
        return Rights.parse(grants, members)
    except ValueError as exc:
        raise r.error(key, str(exc)) from None


def _metrics_listen(r: ConfigReader) -> tuple[str, int] | None:
    """``metrics.listen``: loopback only. The operator listener has neither TLS nor logins, and what it
    shows (private entry counts, refusal reasons, the members' health) is not for the network; remote
    scrapers use the feed listener (TLS) as a user with ``operator: true``, or a proxy."""
    if "listen" in r.get("metrics", {}, dict) and r.get("metrics.listen", None, (str, bool)) in (None, False):
        return None
    host, _, port = r.get("metrics.listen", "127.0.0.1:9180").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise r.error("metrics.listen", "must be host:port, e.g. 127.0.0.1:9180, or null for none")
    if not is_loopback(host):
        raise r.error("metrics.listen", f"{host} is not a loopback address: the operator listener has no TLS"
                                        " and no login; scrape the feed listener as a user with"
                                        " operator: true instead, or put a TLS proxy in front")
    return host, int(port)
