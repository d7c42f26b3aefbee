"""Which held items each periodic check fetches again (``xmpp.sweep``): in turn, all of them in time."""

from __future__ import annotations

from xmppbridge.xmpp.sweep import Sweep

NODE = ("pubsub.a.test", "iodef/public/mitigation")
OTHER = ("pubsub.a.test", "iodef/partner/mitigation")


def test_checks_take_the_held_items_in_turn_and_come_round_again() -> None:
    sweep = Sweep(2)
    held = ["e", "c", "a", "d", "b"]  # in the listing's order: taken in id order
    assert [sweep.take(NODE, held) for _ in range(4)] == [["a", "b"], ["c", "d"], ["e", "a"], ["b", "c"]]


def test_every_held_item_is_taken_within_len_over_size_checks() -> None:
    sweep = Sweep(100)
    held = [f"item-{i:04d}" for i in range(5000)]
    taken = [item for _ in range(50) for item in sweep.take(NODE, held)]
    assert sorted(taken) == sorted(held)


def test_items_published_or_retracted_between_checks_neither_restart_nor_skip_the_round() -> None:
    sweep = Sweep(2)
    assert sweep.take(NODE, ["b", "d", "f", "h"]) == ["b", "d"]
    # "a" and "c" came (before where the round is), "f" went: the round goes on after "d".
    assert sweep.take(NODE, ["a", "b", "c", "d", "h"]) == ["h", "a"]
    assert sweep.take(NODE, ["a", "b", "c", "d", "h"]) == ["b", "c"]


def test_a_small_node_is_taken_whole_and_nodes_keep_their_own_turns() -> None:
    sweep = Sweep(3)
    assert sweep.take(NODE, ["y", "x"]) == ["x", "y"]
    assert sweep.take(NODE, []) == []
    assert sweep.take(OTHER, ["a", "b", "c", "d"]) == ["a", "b", "c"]
    assert sweep.take(NODE, ["a", "b", "c", "d"]) == ["a", "b", "c"]
    sweep.forget(OTHER)  # no longer followed: a later follow starts from the first
    assert sweep.take(OTHER, ["a", "b", "c", "d"]) == ["a", "b", "c"]
