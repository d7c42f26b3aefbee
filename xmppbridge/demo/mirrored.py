"""Whether each member really mirrors what the others published: the truth behind the demo's READY line.

An entry counts only when the receiver stores exactly the signed bytes the publisher stored (which it
does only after verifying the signature); an item the receiver holds in quarantine is missing with the
quarantine's reason, so the demo can say why instead of waiting. An item a hub relayed counts when the
receiver holds the hub's copy (the originator's signature and the hub's relay signature, and with several
hubs those of the hubs before it) with a custody chain the item can come by (``Topology.is_way``), as the
receiver verified it. In a ring a receiver may hold the item from another hub than its fewest relays'
last (``topology.ways``): any one of those copies counts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from xmppbridge.demo.topology import Topology
from xmppbridge.store import Store

# What `xmppbridge publish` prints for each item it published (cli.cmd_publish).
_PUBLISHED = re.compile(
    r"^(?P<file>.+): published to (?P<node>\S+) on (?P<service>\S+) as item (?P<item>\S+)$")


Pair = tuple[str, str]  # (receiver, publisher): member names


@dataclass(frozen=True)
class Published:
    file: str
    service: str  # where the receiver gets it: the publisher's service, or the hub's that relays it
    node: str
    item_id: str
    via: tuple[str, ...] = ()  # the members that relayed it to the receiver, in order (hubs)
    # The same item as other members hand it to the receiver (a ring: ``topology.ways``); holding any one
    # of these instead counts. Each names its last relay alone (its publisher for a straight copy).
    also: tuple[Published, ...] = ()

    @property
    def relay(self) -> str | None:
        """The member that handed it to the receiver, if not its publisher."""
        return self.via[-1] if self.via else None

    def relayed_by(self, via: tuple[str, ...], service: str) -> Published:
        """This item as the last of ``via`` re-publishes it on ``service``: same node and item id
        (paths/relay.py)."""
        return replace(self, service=service, via=via)


@dataclass(frozen=True)
class Missing:
    item: Published
    reason: str | None  # the receiver's quarantine reason, or None when nothing arrived at all

    def describe(self) -> str:
        where = f"{self.item.node} item {self.item.item_id} ({Path(self.item.file).name})"
        if self.item.via:
            where += f" relayed by {' then '.join(m.upper() for m in self.item.via)}"
        if self.reason is None:
            return f"{where}: not received"
        return f"{where}: {self.reason}" if self.reason.startswith("custody") else \
            f"{where}: quarantined as {self.reason}"


def published_by(output: str) -> list[Published]:
    """The items a ``publish`` run reports as published, from its standard output."""
    return [Published(m["file"], m["service"], m["node"], m["item"])
            for m in map(_PUBLISHED.match, output.splitlines()) if m]


def unreachable(receiver: Path, service: str) -> bool:
    """Whether the receiver's bridge last found ``service`` unreachable (its peer health)."""
    with Store(receiver) as theirs:
        return any(not peer.reachable and peer.service == service for peer in theirs.peers())


def missing_in(stores: Mapping[str, Path], expected: Mapping[Pair, Sequence[Published]],
               topology: Topology) -> dict[Pair, list[Missing]]:
    """For each (receiver, publisher) pair of ``expected``, the items that the receiver's store does not
    hold byte-equal to the publisher's (for a relayed item: to the last relay's copy, with a custody chain
    that ends at that relay and that the item can come by, ``Topology.is_way``), nor as any of the item's
    ``also`` copies, each with the receiver's quarantine reason if it has one.
    ``stores`` maps members to their SQLite files; each is opened once, however many pairs it is in."""
    with ExitStack() as stack:
        opened: dict[str, Store] = {}

        def store(name: str) -> Store:
            if name not in opened:
                opened[name] = stack.enter_context(Store(stores[name]))
            return opened[name]

        sent: dict[tuple[str, str, str], bytes | None] = {}
        reasons: dict[str, dict[tuple[str, str, str], str]] = {}

        def lacking(receiver: str, publisher: str, item: Published) -> Missing | None:
            key = (item.service, item.node, item.item_id)
            if key not in sent:
                ours = store(item.relay or publisher).find_entry(*key)
                sent[key] = None if ours is None else ours.xml
            got = store(receiver).find_entry(*key)
            if sent[key] is None or got is None or got.deleted or got.xml != sent[key]:
                return Missing(item, reasons[receiver].get(key))
            chain = [c.member for c in got.custody]
            ends = chain[:1] == [publisher] and chain[-1:] == [item.relay]
            if item.via and not (ends and topology.is_way(chain)):
                # Never expected: the receiver derives the chain from the signatures it verified.
                return Missing(item, f"custody chain {' then '.join(chain) or 'empty'}, not a way from "
                                     f"{publisher} to {item.relay} ({' then '.join((publisher, *item.via))})")
            return None

        result: dict[Pair, list[Missing]] = {}
        for (receiver, publisher), items in expected.items():
            if receiver not in reasons:
                reasons[receiver] = {(r.service, r.node, r.item_id): r.reason
                                     for r in store(receiver).rejects(limit=100_000)}
            missing = []
            for item in items:
                found = [lacking(receiver, publisher, copy) for copy in (item, *item.also)]
                if all(found):
                    missing.append(found[0])
            result[(receiver, publisher)] = missing
        return result
