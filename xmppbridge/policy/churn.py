"""What a reload changes in the consortium: who joined, who left, whose signing certificates changed,
and which peer services we start or stop following. Pure: the bridge (``bridge.Bridge._reload``) logs
these as audit lines and applies them to the mirror (``xmpp.mirror.Mirror.follow``).

A member joins or leaves by its entry in the registry (``policy.members``), matched by name. A member
rotates its key by listing the new certificate beside the old one (``certificate: [old, new]``) in
every peer's registry, then switching its own ``signing:`` to the new key (a reload too, judged by
``policy.ownkey``); the old one is dropped once nothing signed with it is still on the way. Each of those
edits is a reload, and nobody restarts: trust, subscriptions and audiences follow the registry live.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xmppbridge.policy.members import Member, Registry
from xmppbridge.signing.keys import fingerprint


@dataclass(frozen=True)
class Churn:
    joined: tuple[str, ...] = ()  # member names new in the registry
    left: tuple[str, ...] = ()  # member names gone from it
    rotated: tuple[str, ...] = ()  # members still there whose pinned certificates or CAs changed
    followed: tuple[str, ...] = ()  # peer pubsub services we now subscribe to
    dropped: tuple[str, ...] = ()  # peer pubsub services we no longer subscribe to

    def __bool__(self) -> bool:
        return any((self.joined, self.left, self.rotated, self.followed, self.dropped))

    def lines(self) -> list[str]:
        """One audit line per change, as the reload logs them."""
        return ([f"member {name} joined" for name in self.joined]
                + [f"member {name} left" for name in self.left]
                + [f"member {name}'s signing certificates changed" for name in self.rotated]
                + [f"following {service}" for service in self.followed]
                + [f"no longer following {service}" for service in self.dropped])


def churn(old: Registry, new: Registry, old_services: Iterable[str], new_services: Iterable[str]) -> Churn:
    """The difference between the running registry and subscriptions and the reloaded ones."""
    before = {m.name: m for m in old.members}
    after = {m.name: m for m in new.members}
    was, now = set(old_services), set(new_services)
    return Churn(
        joined=tuple(sorted(after.keys() - before.keys())),
        left=tuple(sorted(before.keys() - after.keys())),
        rotated=tuple(sorted(name for name in before.keys() & after.keys()
                             if _signers(before[name]) != _signers(after[name]))),
        followed=tuple(sorted(now - was)),
        dropped=tuple(sorted(was - now)),
    )


def _signers(member: Member) -> frozenset[str]:
    return frozenset(fingerprint(c) for c in (*member.certificates, *member.authorities))
