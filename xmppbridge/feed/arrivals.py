"""How long mirrored items took to reach us, per reporting member and per day: the receiving side's
delivery latency, which the dashboard draws beside the publishing side's publish delay.

Pure: from (member, stated, received) of each remote entry (``store.counts.Activity.arrivals``).

What a receiver can know. An XML signature carries no time, and the publisher's outbox times stay at the
publisher, so the earliest moment a receiver can vouch for is the one the originator's signed document
states: its ReportTime, or GenerationTime when it has none (``Incident.published_time``, kept as the
entry's ``published_at`` from the first version we stored). A relayed document's custody chain knows no
more (``store.items.Custodian``: the originator's hop is that same stated time, the last relay's our own
receipt). So an arrival is ``received_at - published_at`` of the first version we stored: it includes
whatever passed between writing the report and publishing it, and the members' clocks, which may
differ. An item that arrives before the time it states (a sender's clock ahead of ours) is counted as
0 and counted apart, so the skew is shown rather than hidden or averaged away; one that states no
time is counted apart too.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Arrivals:
    """One member's items received on one UTC day."""

    median: float  # seconds from the stated time to our receipt, negatives counted as 0
    p95: float
    timed: int  # items that state a time
    ahead: int  # of those, how many arrived before the time they state (clocks differ)
    untimed: int  # items that state no time: not in the figures


def per_member_and_day(rows: Iterable[tuple[str, datetime | None, datetime]],
                       days: Iterable[str]) -> dict[str, dict[str, Arrivals]]:
    """member -> day (of ``days``, UTC ``YYYY-MM-DD``) -> its arrivals, from (member, stated, received)
    rows; days without any item are left out, and so are members without any on ``days``."""
    wanted = set(days)
    delays: dict[tuple[str, str], list[float]] = defaultdict(list)
    untimed: dict[tuple[str, str], int] = defaultdict(int)
    for member, stated, received in rows:
        key = (member, received.date().isoformat())
        if key[1] not in wanted:
            continue
        if stated is None:
            untimed[key] += 1
        else:
            delays[key].append((received - stated).total_seconds())
    found: dict[str, dict[str, Arrivals]] = defaultdict(dict)
    for key in delays.keys() | untimed.keys():
        values = delays.get(key, [])
        clamped = [max(v, 0.0) for v in values]
        found[key[0]][key[1]] = Arrivals(
            median=statistics.median(clamped) if clamped else 0.0, p95=p95(clamped) if clamped else 0.0,
            timed=len(values), ahead=sum(v < 0 for v in values), untimed=untimed.get(key, 0))
    return dict(found)


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank (of a non-empty list)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
