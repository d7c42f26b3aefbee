"""Who may read each category at the source: the members whose bridges are affiliated with its node.

::

    audiences:
      partner: all                        # every member of the registry
      need-to-know: [cert-b, cert-c]      # only these
      need-to-know/mitigation: [cert-b]   # narrower for one purpose: the most specific key wins
      private: []                         # nobody: private items are refused at publish

A category is a (restriction, purpose) pair, the key of a node (``policy.nodes.node_name``) and of a
right (``policy.rights``). ``public`` is open to everyone and takes no list. A category no key names
has no audience: the default is "nobody beyond what is named", and an incident whose audience is empty
is refused at publish (``Publisher``) instead of going to a node nobody may read.

RFC 8600 §8.3.4: a broker offers the ``whitelist`` (and ``authorize``) models, with per-platform
authorisation; these audiences are that whitelist, per node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS
from xmppbridge.policy.rights import Rights

EVERY_MEMBER = "all"
AUDIENCE_EMPTY = "audience-empty"  # the reason an incident nobody may read is refused at publish


@dataclass(frozen=True)
class Audience:
    """The readers of one category: everyone (``open``), or the named members only."""

    open: bool
    members: frozenset[str] = frozenset()  # member names (policy.members.Member.name)
    bridges: frozenset[str] = frozenset()  # their bridges' JIDs: the node's member affiliations

    @property
    def empty(self) -> bool:
        return not self.open and not self.members


OPEN = Audience(open=True)
NOBODY = Audience(open=False)


@dataclass(frozen=True)
class Audiences:
    """Category key (``restriction`` or ``restriction/purpose``) -> member names, ``all`` expanded."""

    rules: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    bridges: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # name -> bridge JID

    def of(self, restriction: str, purpose: str) -> Audience:
        """The most specific rule wins, so that one purpose can be narrower (or wider) than the rest."""
        if restriction == "public":
            return OPEN
        for key in (f"{restriction}/{purpose}", restriction):
            if key in self.rules:
                names = self.rules[key]
                return Audience(False, names, frozenset(self.bridges[n] for n in names))
        return NOBODY

    def rights_of(self, member: str) -> Rights:
        """The categories ``member`` may read: public, and every one whose audience names it."""
        return Rights(frozenset((r, p) for r in RESTRICTIONS for p in PURPOSES
                                if (a := self.of(r, p)).open or member in a.members))


def parse_audiences(spec: Mapping[str, object], bridges: Mapping[str, str]) -> Audiences:
    """From the config mapping; raises ``ValueError`` naming the key for an unknown category or member.
    ``bridges`` maps the registry's peer names (``all`` stands for every one of them) to their JIDs."""
    known = tuple(bridges)
    rules: dict[str, frozenset[str]] = {}
    for key, value in spec.items():
        restriction, _, purpose = str(key).partition("/")
        if restriction not in RESTRICTIONS or purpose and purpose not in PURPOSES:
            raise ValueError(f"{key}: is not a restriction ({', '.join(RESTRICTIONS)}) or "
                             f"restriction/purpose with purpose one of {', '.join(PURPOSES)}")
        if restriction == "public":
            raise ValueError(f"{key}: public items are open to everyone; remove the key")
        if value == EVERY_MEMBER:
            rules[str(key)] = frozenset(known)
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key}: must be 'all' or a list of member names")
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{key}: {', '.join(unknown)} is not a member of the registry (members[].name)")
        rules[str(key)] = frozenset(value)
    return Audiences(MappingProxyType(rules), MappingProxyType(dict(bridges)))


def flat_audiences(whitelist: Iterable[str]) -> Audiences:
    """The audiences of a config without a registry (``pubsub.whitelist``): every listed JID reads every
    non-public category, as before audiences existed."""
    jids = frozenset(j.lower() for j in whitelist)
    rules = {r: jids for r in RESTRICTIONS if r != "public"} if jids else {}
    return Audiences(MappingProxyType(rules), MappingProxyType({j: j for j in jids}))
