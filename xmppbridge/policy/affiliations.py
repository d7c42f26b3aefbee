"""Membership that follows the config: what to change on a node so that its readers are its audience.

A whitelist node (XEP-0060 §4.5) is readable by the JIDs affiliated as ``member`` (or more). Nodes are
created with their audience's bridges as members (``xmpp.outbox``), but audiences change: a member
joins, leaves, or is narrowed out of a category. ``plan`` compares what the service holds with the
target and returns the changes that make them equal; ``xmpp.reconcile`` reads and applies them.

The owner (our own bridge) is never touched, whatever the target says: removing it would lock us out of
our own node. Open (public) nodes take no changes: everyone may read them (RFC 8600 §8.3.4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from xmppbridge.jids import bare_jid
from xmppbridge.policy.audiences import Audience

# Affiliations that read a whitelist node (XEP-0060 §4.1, table 4): removing one of these is a change.
# An ``outcast`` that the target does not name is left alone: it reads nothing already.
READING = frozenset({"owner", "publisher", "member"})
CHANGES = ("added", "removed", "subscription-cancelled")  # the metric's labels


@dataclass(frozen=True)
class NodeSubscription:
    jid: str  # as the service reports it: may be a full JID
    subid: str | None
    state: str  # subscribed, pending, unconfigured, none (XEP-0060 §8.8.1)


@dataclass(frozen=True)
class Changes:
    add: tuple[str, ...] = ()  # bare JIDs to affiliate as member
    remove: tuple[str, ...] = ()  # bare JIDs whose affiliation becomes none
    cancel: tuple[NodeSubscription, ...] = ()  # subscriptions to set to none

    def __bool__(self) -> bool:
        return bool(self.add or self.remove or self.cancel)


NONE = Changes()


def target_of(audience: Audience, approved: frozenset[str]) -> frozenset[str] | None:
    """The bare JIDs that must be members of a node of ``audience``: its bridges, plus the JIDs an
    operator approved (RFC 8600 ``authorize``). None for an open node: it has no member list to keep."""
    if audience.open:
        return None
    return frozenset(bare_jid(j) for j in audience.bridges | approved)


def plan(affiliations: Mapping[str, str], subscriptions: Iterable[NodeSubscription], owner: str,
         target: frozenset[str] | None) -> Changes:
    """The changes that make a node's readers ``target`` (``target_of``), sorted for stable logs."""
    if target is None:
        return NONE
    own = bare_jid(owner)
    held = {bare_jid(jid): affiliation for jid, affiliation in affiliations.items()}
    add = sorted(j for j in target if j != own and held.get(j) not in READING)
    remove = sorted(j for j, affiliation in held.items()
                    if affiliation in READING and j != own and j not in target)
    cancel = sorted((s for s in subscriptions
                     if s.state != "none" and bare_jid(s.jid) != own and bare_jid(s.jid) not in target),
                    key=lambda s: (s.jid, s.subid or ""))
    return Changes(tuple(add), tuple(remove), tuple(cancel))
