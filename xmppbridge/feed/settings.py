"""Feed settings: plain data, importable without aiohttp (the config loader builds one)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from xmppbridge.policy import RESTRICTIONS


@dataclass(frozen=True)
class FeedSettings:
    base_url: str  # public URL of the feed server's root, e.g. "http://127.0.0.1:8081/"
    # Restrictions anyone may read without authenticating. Any iterable is accepted and frozen.
    anonymous_restrictions: frozenset[str] = field(default_factory=lambda: frozenset({"public"}))
    page_size: int = 50
    author: str = "xmppbridge"  # atom:author/atom:name of the feeds

    def __post_init__(self) -> None:
        restrictions = frozenset(_as_iterable(self.anonymous_restrictions))
        unknown = sorted(restrictions - set(RESTRICTIONS))
        if unknown:
            raise ValueError(
                f"anonymous_restrictions: unknown restriction(s) {', '.join(unknown)};"
                f" use {', '.join(RESTRICTIONS)}"
            )
        object.__setattr__(self, "anonymous_restrictions", restrictions)
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {self.page_size}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an absolute http(s) URL, not {self.base_url!r}")


def _as_iterable(value: Iterable[str] | str) -> Iterable[str]:
    return [value] if isinstance(value, str) else value
