"""The ``relay:`` section of a coordinator's config -> ``RelayPolicy`` (``policy.relaying``).

::

    relay:                                  # this member is a hub: it re-publishes what it receives
      - from: [cert-a, cert-b]              # members whose items it relays (default: every one followed)
        nodes: [iodef/partner/mitigation]   # received nodes (default: any)
        restrictions: [public, partner, need-to-know]   # default: all but private, which is never relayed
        purposes: [mitigation, reporting]   # default, or all: any
        to: all                             # the members that may read what it relays: all or names

Refused with ``<file>: relay[i].<key>: <problem>`` when a rule names private items or a private node,
names a member the registry lacks or one we do not follow, or when the hub's ``audiences:`` let a member
outside ``to`` read a node the rule relays to (that would widen who reads the item).
"""

from __future__ import annotations

from typing import Any

from xmppbridge.configfile import ConfigReader
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS, TLP_ALIASES, canonical_purpose
from xmppbridge.policy.audiences import EVERY_MEMBER, Audiences
from xmppbridge.policy.members import Registry
from xmppbridge.policy.nodes import node_restriction
from xmppbridge.policy.relaying import NO_RELAY, RELAYABLE, RelayPolicy, RelayRule, audience_problems

_KEYS = ("from", "nodes", "restrictions", "purposes", "to")
_PRIVATE = ("private items are for the originator's direct recipients and are never relayed (RFC 7970 "
            "§3.3.1: private is not shared beyond them); remove it")


def read_relay(r: ConfigReader, registry: Registry, audiences: Audiences) -> RelayPolicy:
    spec = r.get("relay", None, list)
    if spec is None:
        return NO_RELAY
    if not registry.members:
        raise r.error("relay", "names members (from, to): add the members: registry, with the hub's own "
                               "entry and one per spoke")
    if not spec:
        raise r.error("relay", "is empty: give at least one rule, or remove the section")
    rules = tuple(_rule(r, f"relay[{i}]", entry, registry, audiences) for i, entry in enumerate(spec))
    return RelayPolicy(rules)


def _rule(r: ConfigReader, key: str, entry: Any, registry: Registry, audiences: Audiences) -> RelayRule:
    if not isinstance(entry, dict):
        raise r.error(key, "must be a mapping with to and optionally from, nodes, restrictions, purposes")
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise r.error(key, f"unknown key {unknown[0]!r}; the keys are {', '.join(_KEYS)}")
    peers = {m.name: m for m in registry.peers()}
    sources = None
    if entry.get("from") not in (None, EVERY_MEMBER):
        names = _names(r, f"{key}.from", entry["from"], peers)
        for name in sorted(names):
            if not peers[name].follow:
                raise r.error(f"{key}.from", f"{name} is not followed (its members[] entry says follow: "
                                             "false): a hub relays only what it receives; follow it or "
                                             "remove it here")
        sources = frozenset(peers[n].pubsub for n in names)
    nodes = None
    if entry.get("nodes") not in (None, EVERY_MEMBER):
        nodes = _strings(r, f"{key}.nodes", entry["nodes"], "node names such as iodef/partner/mitigation")
        for node in sorted(nodes):
            if node_restriction(node) == "private":
                raise r.error(f"{key}.nodes", f"{node}: {_PRIVATE}")
    restrictions = frozenset(RELAYABLE)
    if entry.get("restrictions") is not None:
        listed = _strings(r, f"{key}.restrictions", entry["restrictions"], "restrictions")
        restrictions = frozenset(TLP_ALIASES.get(v, v) for v in listed)
        unknown = sorted(restrictions - set(RESTRICTIONS))
        if unknown:
            raise r.error(f"{key}.restrictions",
                          f"{unknown[0]} is not a restriction ({', '.join(RELAYABLE)})")
        if "private" in restrictions:
            raise r.error(f"{key}.restrictions", _PRIVATE)
    purposes = None
    if entry.get("purposes") not in (None, EVERY_MEMBER):
        listed = _strings(r, f"{key}.purposes", entry["purposes"], "purposes")
        unknown = sorted(listed - set(PURPOSES))
        if unknown:
            raise r.error(f"{key}.purposes", f"{unknown[0]} is not a purpose ({', '.join(PURPOSES)})")
        purposes = frozenset(canonical_purpose(p) for p in listed)
    if entry.get("to") is None:
        raise r.error(f"{key}.to", "is required: 'all' or the members that may read what this rule relays")
    to = _names(r, f"{key}.to", entry["to"], peers)
    rule = RelayRule(sources, nodes, restrictions, purposes, to, frozenset(peers[n].bridge for n in to))
    problems = audience_problems(rule, audiences)
    if problems:
        raise r.error(f"{key}.to", "does not name every member that would read what the rule relays: "
                                   f"{'; '.join(problems)}. Relaying must not widen who reads an item: add "
                                   "them to to, narrow audiences: for those categories, or leave those "
                                   "categories out of the rule")
    return rule


def _names(r: ConfigReader, key: str, value: Any, peers: dict[str, Any]) -> frozenset[str]:
    if value == EVERY_MEMBER:
        return frozenset(peers)
    names = _strings(r, key, value, "member names (members[].name) or 'all'")
    unknown = sorted(names - set(peers))
    if unknown:
        raise r.error(key, f"{unknown[0]} is not a peer in the members: registry (members[].name; our own "
                           "entry does not count)")
    return names


def _strings(r: ConfigReader, key: str, value: Any, what: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise r.error(key, f"must be a non-empty list of {what}")
    return frozenset(v.strip() for v in value)
