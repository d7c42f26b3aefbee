"""Who is in a local consortium, on which server software, and who subscribes to whom: pure data.

The demo (``xmppbridge demo --members N``), the integration tests and the scale benchmark build their
consortium from these values, so a topology is one mapping, member -> the members whose nodes it
follows, and everything that depends on the shape (the member registry's ``follow`` flags, which
items each member must end up holding) is derived from it.

The MILE transport's two shapes: the full mesh, every member follows every other; and hub and spoke, a
coordinator (the hub) follows every other member and re-publishes what they send it (its ``relay:``
section, ``relay_section``) to the spokes, which follow the hub alone. A spoke then holds another spoke's
item as the hub's copy, on the hub's service, with the custody chain originator then hub (``paths`` says
by which relays each receiver gets an item). And regional hubs, SCALING.md's plan for 700 members:
each hub has its share of the spokes, follows them and its neighbours on a ring of hubs, and relays what
it gets from both. With two hubs (a tree), a spoke of one region gets the other region's items with the
custody chain originator, its hub, our hub. With three or more (a ring, in which a hub hears of an item
by two ways), a hub relays the first copy it gets and only mirrors the second (``paths.hub``), so a spoke
still holds each item once, with the chain of whichever way came first.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from types import MappingProxyType

from xmppbridge.iodef.markings import canonical_restriction
from xmppbridge.policy.audiences import Audiences
from xmppbridge.policy.relaying import RELAYABLE

MAX_NAMES = 26  # members are named a, b, c, ...: one letter each, the domain <letter>.test
SERVER_KINDS = ("prosody", "ejabberd")
TOPOLOGIES = ("mesh", "hub", "tree", "ring")  # what --topology names
REGIONAL_HUBS = {"tree": 2, "ring": 3}  # how many hubs each shape of regional hubs has (a ring: at least)


class TopologyError(ValueError):
    """A consortium that cannot be built as asked; the message says what to ask instead."""


@dataclass(frozen=True)
class Topology:
    name: str
    follows: Mapping[str, frozenset[str]]  # member -> the members whose nodes it subscribes to
    hubs: tuple[str, ...] = ()  # the coordinators, which relay what they receive; none in a mesh

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.follows)

    def receivers_of(self, publisher: str) -> frozenset[str]:
        """The members that get what ``publisher`` publishes from its own service: those that follow it."""
        return frozenset(m for m, sources in self.follows.items() if publisher in sources)

    def relays(self, member: str, source: str, restriction: str) -> bool:
        """Whether ``member`` re-publishes what it receives from ``source`` in ``restriction``: a hub does,
        from every member it follows (spokes, and in a tree the other hub), in every restriction but
        private (never relayed, ``policy.relaying``)."""
        return (member in self.hubs and source in self.follows[member]
                and canonical_restriction(restriction) in RELAYABLE)

    def relay_section(self, member: str) -> list[dict[str, object]] | None:
        """The ``relay:`` section of ``member``'s config (``policy.relayconfig``) that does what ``relays``
        says, or None for a member that relays nothing. ``to: all`` fits any ``audiences:`` of the hub:
        whoever reads its node of a category is named, so relaying widens nothing."""
        if member not in self.hubs:
            return None
        return [{"from": sorted(self.follows[member]), "to": "all"}]

    def is_way(self, chain: Sequence[str]) -> bool:
        """Whether an item can come by this custody chain: its publisher first, then hubs that each follow
        the member before; none twice (``ways``)."""
        return (len(set(chain)) == len(chain) and all(m in self.hubs for m in chain[1:])
                and all(before in self.follows[after] for before, after in pairwise(chain)))

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


def hub_and_spoke(names: Sequence[str], coordinator: str | None = None) -> Topology:
    """``coordinator`` (default: the first member) follows every other member and relays to them; each
    of them follows the coordinator alone."""
    hub = coordinator or names[0]
    if hub not in names:
        raise TopologyError(f"--hub {hub!r} is not a member; the members are {', '.join(names)}")
    if len(names) < 3:
        raise TopologyError(f"--topology hub needs 3 members at least (a hub and two spokes it relays "
                            f"between), got {len(names)}")
    spokes = frozenset(n for n in names if n != hub)
    return Topology("hub", MappingProxyType({m: spokes if m == hub else frozenset((hub,)) for m in names}),
                    (hub,))


def regions(kind: str, names: Sequence[str], count: int) -> Topology:
    """Regional hubs, the first ``count`` members, on a ring: each follows and relays its two neighbours
    (with two or three hubs, every other hub). The other members are their spokes, dealt in turn (with
    two hubs: c to a, d to b, e to a, ...), each following its hub alone. An item then comes to a hub by
    two ways at most, however many hubs there are (``ways``)."""
    if len(names) < 2 * count:
        raise TopologyError(f"--topology {kind} needs {2 * count} members at least ({count} hubs with a "
                            f"spoke each), got {len(names)}")
    hubs = tuple(names[:count])
    region = {spoke: hubs[i % count] for i, spoke in enumerate(names[count:])}
    neighbours = {hub: {hubs[i - 1], hubs[(i + 1) % count]} - {hub} for i, hub in enumerate(hubs)}
    follows = {hub: frozenset({*neighbours[hub], *(s for s, h in region.items() if h == hub)})
               for hub in hubs}
    return Topology(kind, MappingProxyType({**follows, **{s: frozenset((h,)) for s, h in region.items()}}),
                    hubs)


@dataclass(frozen=True)
class Shape:
    """What ``--topology``, ``--hub`` and ``--hubs`` ask for, before the members are named."""

    kind: str = "mesh"
    hub: str | None = None  # the coordinator of a hub and spoke (default the first member)
    hubs: int | None = None  # how many hubs a ring has (default 3)

    def of(self, names: Sequence[str]) -> Topology:
        """The topology of members ``names``; ``TopologyError`` says what to ask instead."""
        kind = self.kind
        if kind not in TOPOLOGIES:
            raise TopologyError(f"--topology must be one of {', '.join(TOPOLOGIES)}, got {kind!r}")
        if kind != "hub" and self.hub is not None:
            hubs = "none" if kind == "mesh" else f"the first {REGIONAL_HUBS[kind]} members as its hubs"
            raise TopologyError(f"--hub names the coordinator of --topology hub; --topology {kind} has "
                                f"{hubs}")
        if kind != "ring" and self.hubs is not None:
            raise TopologyError(f"--hubs sets how many hubs --topology ring has, not --topology {kind}")
        if kind == "mesh":
            return mesh(names)
        if kind == "hub":
            return hub_and_spoke(names, self.hub)
        count = REGIONAL_HUBS[kind] if self.hubs is None else self.hubs
        if count < REGIONAL_HUBS[kind]:
            raise TopologyError(f"--hubs: a ring has {REGIONAL_HUBS[kind]} hubs at least, got {count}")
        return regions(kind, names, count)


def topology(kind: str, names: Sequence[str], hub: str | None = None) -> Topology:
    """The shape ``--topology kind`` names, with its default number of hubs; ``hub``: the coordinator of a
    hub and spoke (default the first member)."""
    return Shape(kind, hub).of(names)


def server_kinds(spec: str, names: Sequence[str]) -> dict[str, str]:
    """``--servers prosody,ejabberd``: the kinds dealt round-robin (a on Prosody, b on ejabberd, c on
    Prosody, ...)."""
    kinds = [kind.strip() for kind in spec.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(SERVER_KINDS))
    if not kinds or unknown:
        raise TopologyError(f"--servers takes a comma-separated list of {' and '.join(SERVER_KINDS)}, "
                            f"got {spec!r}")
    return {name: kinds[i % len(kinds)] for i, name in enumerate(names)}


def paths(topology: Topology, audiences: Mapping[str, Audiences], publisher: str, restriction: str,
          purpose: str) -> dict[str, tuple[str, ...]]:
    """Receiver -> the members that relayed an item to it, in order (empty: straight from the publisher),
    for every member that must end up holding an item ``publisher`` published in this category: from
    ``publisher`` itself, those that follow it and its audiences let read it (``policy.audiences``);
    from a member that relays what it got (``Topology.relays``), those that follow that member and its
    audiences let read its node of the same category, and so on, hub after hub. A member already
    reached keeps the first way (breadth first: the fewest relays). The publisher does not count: its own
    item relayed back to it is passed over (``hub.OwnEcho``), as is a hub's own relay coming back.

    In a ring a longer way can be the faster one, so a receiver may hold the item from another hub, or by
    a longer custody chain (``ways``, ``Topology.is_way``)."""
    return _reached(topology, audiences, publisher, restriction, purpose)


def ways(topology: Topology, audiences: Mapping[str, Audiences], publisher: str, restriction: str,
         purpose: str) -> dict[str, frozenset[str]]:
    """Receiver -> the members whose copy of the item it may hold, for every receiver of ``paths``: the
    publisher, if the receiver reads it straight; and each hub it reads that relays the item and that the
    item can reach without passing the receiver (a member's own relay coming back is passed over,
    ``hub.OwnEcho``). A receiver holds at least one of these copies, and at most one from each.

    In a mesh, a hub and spoke or a tree this is the last relay of ``paths`` alone. In a ring a hub
    hears of an item by two ways; it mirrors the copy of each and relays only the first (``paths.hub``).
    Which way comes first depends on timing, not only on the fewest relays. A hub subscribed late to a
    node may get the item around the ring before it gets it straight. Its relay of that copy names the
    hub it came through, so that hub passes the relay over, and holds the item from its other way only."""
    result = {}
    readers = _readers(topology, audiences, publisher, restriction, purpose)
    for receiver in _reached(topology, audiences, publisher, restriction, purpose):
        around = _reached(topology, audiences, publisher, restriction, purpose, without=receiver)
        direct = {publisher} if receiver in readers else set()
        relayed = {hub for hub, way in around.items()
                   if topology.relays(hub, way[-1] if way else publisher, restriction)
                   and receiver in _readers(topology, audiences, hub, restriction, purpose)}
        result[receiver] = frozenset(direct | relayed)
    return result


def _reached(topology: Topology, audiences: Mapping[str, Audiences], publisher: str, restriction: str,
             purpose: str, without: str | None = None) -> dict[str, tuple[str, ...]]:
    """``paths``, with member ``without`` (if any) taken out of the consortium."""
    gone = {publisher, without}
    reached: dict[str, tuple[str, ...]] = dict.fromkeys(
        _readers(topology, audiences, publisher, restriction, purpose) - gone, ())
    frontier = sorted(reached)
    while frontier:
        later = []
        for relay in frontier:
            via = reached[relay]
            if topology.relays(relay, via[-1] if via else publisher, restriction):
                for receiver in sorted(_readers(topology, audiences, relay, restriction, purpose)
                                       - gone - set(reached)):
                    reached[receiver] = (*via, relay)
                    later.append(receiver)
        frontier = later
    return reached


def may_receive(topology: Topology, audiences: Mapping[str, Audiences], publisher: str, restriction: str,
                purpose: str) -> frozenset[str]:
    """The members that must end up holding an item ``publisher`` published in this category, directly or
    relayed (``paths``)."""
    return frozenset(paths(topology, audiences, publisher, restriction, purpose))


def _readers(topology: Topology, audiences: Mapping[str, Audiences], source: str, restriction: str,
             purpose: str) -> frozenset[str]:
    """The followers of ``source`` that its audiences let read its node of this category."""
    audience = audiences[source].of(restriction, purpose)
    return frozenset(m for m in topology.receivers_of(source) if audience.open or m in audience.members)
