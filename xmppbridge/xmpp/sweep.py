"""Which held items a periodic check fetches again: revisions whose notification was lost.

A revision keeps the item id of the version it replaces (one id per IncidentID, ``iodef.document``), so
a node's listing reads the same before and after it, and a check, which fetches what it does not hold,
cannot see a revision whose notification was lost (the peer's server restarted with it queued, or an s2s
link dropped with it on the wire). The catch-up after our own reconnection fetches everything again;
between reconnections, each check of a node also fetches ``SWEEP`` of the items it holds, in turn, so
that such a revision is found within len(held) / ``SWEEP`` checks of its node (50 for a full node).

What we hold already is passed over without verifying it again (``Mirror.on_item``), so the cost is the
peer's: about 1.2 ms of a Prosody per item by id (SCALING.md, "a catch-up of items already held"),
0.12 s a check, against about 2 s for listing a full node. The check's pace counts it
(``listing.ListingPace``: the pause follows what the whole check took the peer).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

SWEEP = 100  # held items a check fetches again

Key = tuple[str, str]  # (service, node)


class Sweep:
    """Per node, where the last check's share of held items ended: the next one takes the ids after it,
    in id order, so that items published or retracted in between neither restart nor skip the round."""

    def __init__(self, size: int = SWEEP) -> None:
        self.size = size
        self._after: dict[Key, str] = {}

    def take(self, key: Key, held: Iterable[str]) -> list[str]:
        """The next ``size`` ids of ``held`` (listed by the node, and held), wrapping round."""
        ordered = sorted(set(held))
        if len(ordered) <= self.size:
            self._after.pop(key, None)
            return ordered
        start = bisect.bisect_right(ordered, self._after[key]) if key in self._after else 0
        chosen = (ordered[start:] + ordered[:start])[:self.size]
        self._after[key] = chosen[-1]
        return chosen

    def forget(self, key: Key) -> None:
        self._after.pop(key, None)
