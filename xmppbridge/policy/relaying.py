"""Hub and spoke: which received items a coordinator re-publishes on its own nodes, and to whom.

A coordinator (the hub) follows its members (the spokes) and relays what they publish; the spokes
follow only the hub. Each rule of the ``relay:`` section (``policy.relayconfig``) selects received items
by the member they came from, the node, the restriction and the purpose, and names ``to``, the members
that may read what it relays. The relayed item goes to the hub's node of its own restriction and purpose
(``policy.nodes.node_name``), so a restriction is never widened, and the readers of that node (the hub's
``audiences:``) must all be named in ``to`` (checked when the config is loaded, ``audience_problems``, and
again for every item, ``relay.prepare_relay``). Private items are for the originator's direct recipients
and are never relayed: no rule can name them, and one that comes from a relayed member is refused.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from xmppbridge.errors import InputRejected
from xmppbridge.iodef.markings import PURPOSES, canonical_purpose, canonical_restriction
from xmppbridge.policy.audiences import Audiences

# What a rule may relay: every restriction but private, which stays with the originator's recipients.
RELAYABLE = ("public", "partner", "default", "need-to-know")


@dataclass(frozen=True)
class RelayRule:
    """One ``relay:`` entry. ``None`` for ``sources``, ``nodes`` or ``purposes``: any."""

    sources: frozenset[str] | None  # the pubsub services (jids.service_key) of the members relayed
    nodes: frozenset[str] | None  # received node names
    restrictions: frozenset[str]  # canonical restrictions (policy.nodes), a subset of RELAYABLE
    purposes: frozenset[str] | None  # canonical purposes
    to: frozenset[str]  # names of the members that may read what this rule relays
    to_bridges: frozenset[str] = frozenset()  # their bridges' JIDs, as the node affiliations name them

    def selects(self, service: str, node: str, restriction: str, purpose: str) -> bool:
        """Whether an item received on ``node`` of ``service`` falls under this rule. A private item
        from a selected member and node is selected too, so that its refusal is recorded rather than
        passed over in silence: the operator asked for that member's items and this one stays here."""
        if self.sources is not None and service not in self.sources:
            return False
        if self.nodes is not None and node not in self.nodes:
            return False
        if self.purposes is not None and canonical_purpose(purpose) not in self.purposes:
            return False
        restriction = canonical_restriction(restriction)
        return restriction == "private" or restriction in self.restrictions


@dataclass(frozen=True)
class RelayPolicy:
    rules: tuple[RelayRule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, service: str, node: str, restriction: str, purpose: str) -> RelayRule | None:
        """The first rule that selects the item, None when it is not to be relayed."""
        return next((rule for rule in self.rules if rule.selects(service, node, restriction, purpose)), None)


NO_RELAY = RelayPolicy()


def audience_problems(rule: RelayRule, audiences: Audiences) -> list[str]:
    """Why ``rule`` would let more members read relayed items than its ``to`` names: for each category
    it relays (public aside, which is everyone's), the hub's audience of that node must be inside ``to``.
    Empty when it is fine."""
    problems = []
    for restriction in sorted(rule.restrictions - {"public"}):
        for purpose in sorted(rule.purposes if rule.purposes is not None else PURPOSES):
            readers = audiences.of(restriction, purpose).members
            outside = sorted(readers - rule.to)
            if outside:
                problems.append(f"{restriction}/{purpose} is read by {', '.join(outside)} (audiences:)")
    return problems


def check_reach(restriction: str, readers: Collection[str], to: Collection[str]) -> None:
    """At relay time, what ``audience_problems`` checks at load: nobody outside the rule's ``to`` (bridge
    JIDs) reads the node an item of ``restriction`` is relayed to (public aside, which is everyone's).
    The audiences may have changed since (SIGHUP). Raises ``InputRejected`` with reason ``relay-refused``."""
    if canonical_restriction(restriction) == "public":
        return
    outside = sorted(set(readers) - set(to))
    if outside:
        raise InputRejected(f"{', '.join(outside)} would read it on our node, and the relay rule's to does "
                            "not name them", reason="relay-refused")
