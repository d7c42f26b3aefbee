"""The periodic check's pace: a service is listed again only after a pause in proportion to what its
last listing took to answer, at most ten check intervals; services, and each service's nodes, take turns
(``xmppbridge.xmpp.listing``)."""

from __future__ import annotations

from xmppbridge.xmpp.listing import MAX_PAUSE_ROUNDS, ROUND_JITTER, ListingPace, round_delay

A, B = "pubsub.a.test", "pubsub.b.test"
NODES = [(A, "iodef/public/mitigation"), (A, "iodef/public/watch"), (B, "iodef/public/mitigation")]
ROUND, PAUSE = 60.0, 100.0  # the shipped check interval and pause


def test_a_service_never_listed_may_be_listed_at_once() -> None:
    pace = ListingPace()
    assert pace.due(A, 0.0, PAUSE, 600.0)
    assert pace.next_node(NODES, 0.0, ROUND, PAUSE) == NODES[0]


def test_the_pause_is_the_listing_time_times_the_pace() -> None:
    pace = ListingPace()
    pace.listed(A, 3.5, now=1000.0)  # a full Prosody node: 3.5 s to answer
    assert not pace.due(A, 1349.9, PAUSE, 600.0)
    assert pace.due(A, 1350.0, PAUSE, 600.0)
    assert pace.due(B, 1000.0, PAUSE, 600.0)  # per service


def test_the_pause_is_at_most_ten_check_intervals() -> None:
    assert MAX_PAUSE_ROUNDS == 10
    pace = ListingPace()
    pace.listed(A, 120.0, now=0.0)  # a listing that took two minutes
    pace.listed(B, 120.0, now=0.0)
    assert pace.next_node(NODES, 599.0, ROUND, PAUSE) is None
    assert pace.next_node(NODES, 600.0, ROUND, PAUSE) == NODES[0]


def test_services_take_turns_and_so_do_each_services_nodes() -> None:
    pace = ListingPace()
    turns = [pace.next_node(NODES, 0.0, ROUND, PAUSE) for _ in range(6)]
    assert turns == [NODES[0], NODES[2], NODES[1], NODES[2], NODES[0], NODES[2]]


def test_a_service_waiting_out_its_pause_keeps_its_nodes_turns() -> None:
    pace = ListingPace()
    assert pace.next_node(NODES, 0.0, ROUND, PAUSE) == NODES[0]
    pace.listed(A, 1.0, now=0.0)
    assert pace.next_node(NODES, 50.0, ROUND, PAUSE) == NODES[2]  # a waits; b's node comes
    assert pace.next_node(NODES, 60.0, ROUND, PAUSE) == NODES[2]  # and again, while a waits
    assert pace.next_node(NODES, 100.0, ROUND, PAUSE) == NODES[1]  # a's pause is over: its *next* node
    pace.listed(A, 1.0, now=100.0)
    pace.listed(B, 1.0, now=100.0)
    assert pace.next_node(NODES, 150.0, ROUND, PAUSE) is None  # nobody may be listed: the round lists nothing
    assert pace.next_node([], 150.0, ROUND, PAUSE) is None
    assert pace.next_node(NODES, 200.0, ROUND, PAUSE) == NODES[2]  # b's turn, then a's next node
    assert pace.next_node(NODES, 200.0, ROUND, PAUSE) == NODES[0]


def test_a_pause_of_zero_lists_every_round_as_before() -> None:
    pace = ListingPace()
    pace.listed(A, 3.5, now=0.0)
    assert pace.due(A, 0.0, 0.0, 600.0)  # pubsub.check_pause: 0


def test_check_rounds_are_drawn_round_the_interval_so_that_bridges_started_together_drift_apart() -> None:
    assert round_delay(60.0, lambda low, high: low) == 60.0 * (1 - ROUND_JITTER)
    assert round_delay(60.0, lambda low, high: high) == 60.0 * (1 + ROUND_JITTER)
    delays = [round_delay(60.0) for _ in range(200)]
    assert all(48.0 <= delay <= 72.0 for delay in delays)
    assert max(delays) - min(delays) > 12.0  # two bridges' rounds do not stay in step
