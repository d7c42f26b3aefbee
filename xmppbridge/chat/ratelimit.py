"""Per-JID token buckets: a burst of commands is fine, a flood is not answered."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from xmppbridge.chat.settings import RateLimit

# Buckets of JIDs idle this long are full again and can be forgotten (bounds memory under a JID flood).
_FORGET_AFTER = 3600.0


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    warned: bool = False


class RateLimiter:
    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.clock = limit, clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, jid: str) -> str:
        """"ok", "warn" (over the limit: tell them once) or "drop" (still over: stay silent, so that a
        flood never turns the bridge into an amplifier)."""
        now = self.clock()
        if len(self._buckets) > 10_000:
            self._buckets = {k: b for k, b in self._buckets.items() if now - b.stamp < _FORGET_AFTER}
        bucket = self._buckets.setdefault(jid, _Bucket(float(self.limit.burst), now))
        refill = (now - bucket.stamp) * self.limit.per_minute / 60.0
        bucket.tokens, bucket.stamp = min(float(self.limit.burst), bucket.tokens + refill), now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.warned = False
            return "ok"
        if bucket.warned:
            return "drop"
        bucket.warned = True
        return "warn"
