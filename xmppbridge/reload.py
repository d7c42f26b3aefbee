"""What a reload (SIGHUP) may change in a running bridge, and what needs a restart.

Only who reads our nodes is swapped in live: the member registry and the audiences. They are read
afresh wherever they are used (the outbox drain's audience check, the publisher's audience-empty
refusal, the reconciler), so swapping them takes one assignment each and touches neither the store
nor the outbox. Everything else (component JID and secret, ports, store path, trust, subscriptions,
feed, ...) is wired into connections, listeners and loops at start; a reload logs it as needing a
restart and keeps the running value.
"""

from __future__ import annotations

from dataclasses import fields, replace

from xmppbridge.config import Config

LIVE = ("registry", "audiences")


def reloaded(running: Config, loaded: Config) -> tuple[Config, list[str]]:
    """``running`` with ``loaded``'s live settings, and the names of the other settings that differ."""
    restart = [f.name for f in fields(Config)
               if f.name not in LIVE and getattr(running, f.name) != getattr(loaded, f.name)]
    return replace(running, **{name: getattr(loaded, name) for name in LIVE}), restart
