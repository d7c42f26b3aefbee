"""How often the periodic check may list a peer's nodes: paced by what the last listing cost the peer.

Listing a node (disco#items, XEP-0060 §5.5) makes Prosody 0.12 load and parse every stored item of it,
payloads included, to answer with their ids: about 3.5 s of its single core for a full node of 5000
items (BENCHMARKS.md §5). At a hub every spoke lists the hub's nodes, and in the 16-member hub run,
with nodes of up to about 770 items, answering those listings was 54 % of the hub's Prosody work, more
than its whole fan-out (SCALING.md, "What a Prosody hub's server is busy with"). With a fixed interval
that share grows with the nodes and with the number of spokes, until the listings starve the hub.

So, after a listing of one of a service's nodes, the next periodic listing of that service waits
``pause`` (``pubsub.check_pause``) times as long as that listing took to answer (at least
``check_interval`` passes as before, since the check runs once a round). A bridge then takes at most
1/``pause`` of a peer's time with its checks, whatever the size of the peer's nodes, and a peer slow to
answer (busy, or with full nodes) is listed less often by every bridge at once, without any of them
knowing how many others there are. The answer time includes the peer's queue, so a busy peer is spared
more. Where a bridge follows many services (a mesh), each service's turn comes once in as many rounds
anyway, and the pace changes little.

The catch-up after a (re)connection and after an approval lists without waiting: those are the listings
that find what a gap lost. Only answered listings set the pace (a failed one is the peer's health,
``PeerNotes``). No pause is longer than ``MAX_PAUSE_ROUNDS`` check intervals, so that a lost
notification is still found within a bounded time (the listing is the only way a bridge learns that a
peer's server restarted and lost what was on its way). What a check finds missing is not left for the
node's next paced listing either: the next round fetches what is still missing then, without listing
again (``Mirror.recheck``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# A bridge's periodic listings take at most 1 % of a peer's time...
PAUSE = 100.0
# ...or a service is listed at least once in this many check intervals (10 minutes at the shipped 60 s).
MAX_PAUSE_ROUNDS = 10

# Each check round waits the check interval give or take this share of it, drawn anew every round.
ROUND_JITTER = 0.2

Node = tuple[str, str]  # (service, node)


def round_delay(interval: float, draw: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds until the next check round: ``interval``, give or take ``ROUND_JITTER`` of it, at random.

    Bridges started together (a consortium upgraded at once, or the benchmark's followers restarted
    together) would otherwise check in step for good: the pace gives each one the same pause after the
    same long answer, so their listings of a peer keep arriving at the same moment, and each one's
    answer is slow because the others' are queued with it. Four followers listing a full Prosody node in
    the same second held its publishes and notifications up for 15 s (SCALING.md, "the spokes' checks
    of a full hub"). Drawn every round, the rounds drift apart, and the pace keeps them apart."""
    return interval * draw(1.0 - ROUND_JITTER, 1.0 + ROUND_JITTER)


@dataclass
class ListingPace:
    """Which followed node the periodic check lists next. Services take turns, and each service's nodes
    take turns, so that a service left waiting does not make one of its nodes lose its turn to the
    others for good. It keeps what was listed when and how fast; the settings come with each question."""

    _listed: dict[str, tuple[float, float]] = field(default_factory=dict)  # service -> (answered at, took)
    _service_turn: int = 0
    _node_turns: dict[str, int] = field(default_factory=dict)

    def listed(self, service: str, took: float, now: float) -> None:
        """A listing of one of ``service``'s nodes was answered ``took`` seconds after it was asked (for a
        periodic check, with its sweep of held items after it: ``sweep``)."""
        self._listed[service] = (now, max(took, 0.0))

    def due(self, service: str, now: float, pause: float, longest: float) -> bool:
        """Whether ``service`` may be listed at ``now``: ``pause`` times its last listing's answer time
        has passed since, or ``longest`` seconds."""
        if service not in self._listed:
            return True
        at, took = self._listed[service]
        return now >= at + min(pause * took, longest)

    def next_node(self, nodes: Iterable[Node], now: float, interval: float, pause: float) -> Node | None:
        """The (service, node) to check this round, of ``nodes``, the check running every ``interval``
        seconds with ``pause``: the next service in turn that may be listed now, and its next node in
        turn; None if no service may be listed."""
        by_service: dict[str, list[str]] = {}
        for service, node in sorted(set(nodes)):
            by_service.setdefault(service, []).append(node)
        services = list(by_service)
        for step in range(len(services)):
            index = (self._service_turn + step) % len(services)
            service = services[index]
            if self.due(service, now, pause, MAX_PAUSE_ROUNDS * interval):
                self._service_turn = index + 1
                turn = self._node_turns.get(service, 0)
                self._node_turns[service] = turn + 1
                return service, by_service[service][turn % len(by_service[service])]
        return None
