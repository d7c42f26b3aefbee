"""Who is in a local consortium, on which server software, and who subscribes to whom: pure data.

The demo (``xmppbridge demo --members N``), the integration tests and the scale benchmark build their
consortium from these values, so a topology is one mapping, member -> the members whose nodes it
follows, and everything that depends on the shape (the member registry's ``follow`` flags, which
items each member must end up holding) is derived from it.

Only the full mesh exists so far: every member follows every other (the MILE transport's "full mesh").
Hub and spoke (a coordinator re-publishes to spokes that follow only it) is planned; it is a topology
whose spokes follow the hub alone, plus relaying at the hub, so it changes ``follows`` and
``receivers_of``, not the harness.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from xmppbridge.policy.audiences import Audiences

MAX_NAMES = 26  # members are named a, b, c, ...: one letter each, the domain <letter>.test
SERVER_KINDS = ("prosody", "ejabberd")
TOPOLOGIES = ("mesh", "hub")  # what --topology names; hub is not available yet
AVAILABLE = ("mesh",)


class TopologyError(ValueError):
    """A consortium that cannot be built as asked; the message says what to ask instead."""


@dataclass(frozen=True)
class Topology:
    name: str
    follows: Mapping[str, frozenset[str]]  # member -> the members whose nodes it subscribes to

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.follows)

    def receivers_of(self, publisher: str) -> frozenset[str]:
        """The members that receive what ``publisher`` publishes: in a mesh, those that follow it."""
        return frozenset(m for m, sources in self.follows.items() if publisher in sources)

    def links(self) -> frozenset[frozenset[str]]:
        """The pairs of members with an s2s link between their servers (a subscription either way)."""
        return frozenset(frozenset((m, s)) for m, sources in self.follows.items() for s in sources)


def member_names(count: int) -> list[str]:
    """``a``, ``b``, ... for ``count`` members (2 at least: a consortium of one federates nothing)."""
    if not 2 <= count <= MAX_NAMES:
        raise TopologyError(f"--members must be between 2 and {MAX_NAMES}, got {count}")
    return list(string.ascii_lowercase[:count])


def mesh(names: Sequence[str]) -> Topology:
    """Every member follows every other member."""
    return Topology("mesh", MappingProxyType({m: frozenset(n for n in names if n != m) for m in names}))


def topology(kind: str, names: Sequence[str]) -> Topology:
    if kind == "hub":
        raise TopologyError("--topology hub is not available yet: a coordinator that re-publishes to its "
                            "spokes is not wired through XMPP (issue 17); use --topology mesh")
    if kind not in AVAILABLE:
        raise TopologyError(f"--topology must be one of {', '.join(TOPOLOGIES)}, got {kind!r}")
    return mesh(names)


def server_kinds(spec: str, names: Sequence[str]) -> dict[str, str]:
    """``--servers prosody,ejabberd``: the kinds dealt round-robin (a on Prosody, b on ejabberd, c on
    Prosody, ...)."""
    kinds = [kind.strip() for kind in spec.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(SERVER_KINDS))
    if not kinds or unknown:
        raise TopologyError(f"--servers takes a comma-separated list of {' and '.join(SERVER_KINDS)}, "
                            f"got {spec!r}")
    return {name: kinds[i % len(kinds)] for i, name in enumerate(names)}


def may_receive(topology: Topology, audiences: Mapping[str, Audiences], publisher: str, restriction: str,
                purpose: str) -> frozenset[str]:
    """The members that must end up holding an item ``publisher`` published in this category: those
    it reaches (``receivers_of``) that its audiences let read it (``policy.audiences``)."""
    audience = audiences[publisher].of(restriction, purpose)
    return frozenset(m for m in topology.receivers_of(publisher) if audience.open or m in audience.members)
