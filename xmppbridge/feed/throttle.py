"""Failed-login backoff: who has failed how often, and until when their next attempt is not heard.

Pure bookkeeping with an injected clock; the HTTP shell (``feed.login``) asks ``admit`` before it spends
scrypt on a password, and reports each outcome with ``failed`` / ``succeeded``.

Failures are counted twice: per client address (one guesser trying many names) and per user name (many
guessers trying one name). After ``free_failures`` failures on either, that key is blocked for
``first_block`` seconds, doubling with each further failure up to ``max_block``. A success clears both
keys; ``quiet`` seconds without a failure forget a key. While blocked, attempts are refused unheard:
not even a right password gets through, or the block would not stop a guesser at all.

One exception keeps an attacker from locking a user out of their own account: a client address that has
logged in as a user before (within ``KNOWN_FOR``) is not held back by that user's block, only by its own.

Behind reverse proxies named in ``trusted_proxies``, the client is the address they name in
X-Forwarded-For (``client_address``); otherwise the header is ignored.

Memory is bounded: each table holds at most ``max_entries`` keys, and the least recently failed key is
forgotten first (which only ever makes the throttle more lenient, never refuses anyone wrongly).
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

KNOWN_FOR = 30 * 86400.0  # seconds a successful (client, user) pair stays exempt from the user's block
CLIENT, USER = "client", "user"


@dataclass(frozen=True)
class ThrottleSettings:
    free_failures: int = 5  # failures before the first block (per client, and per user name)
    first_block: float = 1.0  # seconds; doubles with each further failure
    max_block: float = 300.0
    quiet: float = 900.0  # seconds without a failure after which a key starts afresh
    hash_slots: int = 1  # passwords verified at once (scrypt), so a flood leaves the other cores alone
    tarpit: float = 1.0  # a refused attempt is answered after this many seconds (at most the block's rest)
    max_entries: int = 10_000  # keys per table (clients, user names, known pairs)
    # Addresses of reverse proxies whose X-Forwarded-For names the client (see client_address).
    trusted_proxies: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.free_failures < 1:
            raise ValueError(f"free_failures must be at least 1, not {self.free_failures}")
        if not 0 < self.first_block <= self.max_block:
            raise ValueError("first_block must be positive and at most max_block")
        if self.quiet < self.max_block:
            # Otherwise a key could be forgotten while still blocked, and the backoff would restart low.
            raise ValueError(f"quiet must be at least max_block ({self.max_block} s)")
        if not 1 <= self.hash_slots <= 64:
            raise ValueError(f"hash_slots must be between 1 and 64, not {self.hash_slots}")
        if self.tarpit < 0:
            raise ValueError("tarpit must not be negative")
        if self.max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        proxies = {self.trusted_proxies} if isinstance(self.trusted_proxies, str) else self.trusted_proxies
        try:
            if not all(isinstance(p, str) for p in proxies):
                raise ValueError("must be a list of IP addresses")
            normalised = frozenset(str(ipaddress.ip_address(p)) for p in proxies)
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {exc}") from None
        object.__setattr__(self, "trusted_proxies", normalised)


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


@dataclass(frozen=True)
class Block:
    """A block that a failure started: which key, for how long (for the audit line and the counter)."""

    scope: str  # CLIENT or USER
    key: str
    seconds: float
    failures: int


@dataclass
class AuthStats:
    """Counts since start, for /metrics: failures by reason, blocks started by scope, refused attempts."""

    failures: Counter[str] = field(default_factory=Counter)
    blocks: Counter[str] = field(default_factory=Counter)
    refused: int = 0


def client_address(peer: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str | None:
    """Who to count a login attempt against: the peer, or behind trusted proxies the nearest address they
    were not. Each proxy appends the address it heard from to X-Forwarded-For, so the list is read from
    the right; entries left of the first untrusted one could be anything the client wrote. Without this,
    every client behind a proxy would share its address, and one guesser would block them all."""
    address = peer
    hops = [] if forwarded_for is None else [hop.strip() for hop in forwarded_for.split(",")]
    while address in trusted and hops:
        address = hops.pop()
    return address


def client_key(remote: str | None) -> str:
    """The address a client is counted under. An IPv6 host usually holds a whole /64 (RFC 4291 §2.5.4,
    RFC 7421), so it is counted as one client; anything unparsable counts as one unknown client."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Throttle:
    def __init__(self, settings: ThrottleSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or ThrottleSettings()
        self.clock = clock
        self.stats = AuthStats()
        self._tables: dict[str, OrderedDict[str, _Record]] = {CLIENT: OrderedDict(), USER: OrderedDict()}
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()

    def admit(self, client: str, user: str | None) -> float:
        """0 when an attempt from ``client`` (for ``user``, if a name was given) may be checked; else the
        seconds until it may, and the refusal is counted."""
        now = self.clock()
        wait = self._blocked(CLIENT, client, now)
        if user is not None and not self._is_known(client, user, now):
            wait = max(wait, self._blocked(USER, user, now))
        if wait > 0:
            self.stats.refused += 1
        return wait

    def failed(self, client: str, user: str | None, reason: str) -> list[Block]:
        """Count a failed attempt; returns the blocks it started (none while failures are still free)."""
        now = self.clock()
        self.stats.failures[reason] += 1
        keys = [(CLIENT, client)] + ([(USER, user)] if user is not None else [])
        blocks = [block for scope, key in keys if (block := self._fail(scope, key, now)) is not None]
        self.stats.blocks.update(block.scope for block in blocks)
        return blocks

    def succeeded(self, client: str, user: str | None) -> None:
        self._tables[CLIENT].pop(client, None)
        if user is not None:
            self._tables[USER].pop(user, None)
            self._known[(client, user)] = self.clock()
            self._known.move_to_end((client, user))
            while len(self._known) > self.settings.max_entries:
                self._known.popitem(last=False)

    # -- bookkeeping -------------------------------------------------------------------------------

    def _record(self, scope: str, key: str, now: float) -> _Record | None:
        record = self._tables[scope].get(key)
        if record is not None and now - record.last_failure >= self.settings.quiet:
            del self._tables[scope][key]
            return None
        return record

    def _blocked(self, scope: str, key: str, now: float) -> float:
        record = self._record(scope, key, now)
        return max(0.0, record.blocked_until - now) if record is not None else 0.0

    def _fail(self, scope: str, key: str, now: float) -> Block | None:
        table, settings = self._tables[scope], self.settings
        record = self._record(scope, key, now) or _Record()
        record.failures += 1
        record.last_failure = now
        table[key] = record
        table.move_to_end(key)
        while len(table) > settings.max_entries:
            table.popitem(last=False)  # the least recently failed
        excess = record.failures - settings.free_failures
        if excess < 0:
            return None
        seconds = min(settings.max_block, settings.first_block * 2.0 ** min(excess, 64))
        record.blocked_until = now + seconds
        return Block(scope, key, seconds, record.failures)

    def _is_known(self, client: str, user: str, now: float) -> bool:
        since = self._known.get((client, user))
        return since is not None and now - since < KNOWN_FOR
