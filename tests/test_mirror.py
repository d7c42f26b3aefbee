"""Catch-up decisions that need no network: which missing items were retracted, and reconnect timing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from xmppbridge.store.subscriptions import ItemState
from xmppbridge.xmpp.component import RECONNECT_MAX_DELAY, backoff_delay
from xmppbridge.xmpp.mirror import retracted_while_away

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def states(*ids: str, deleted: tuple[str, ...] = ()) -> list[ItemState]:
    """Items mirrored in this order (later = updated later)."""
    return [ItemState(item_id, T0 + timedelta(minutes=i), item_id in deleted)
            for i, item_id in enumerate(ids)]


def test_below_capacity_every_missing_item_was_retracted() -> None:
    mirrored = states("i1", "i2", "i3", "i4")
    assert retracted_while_away(mirrored, ["i2", "i4"], remote_capacity=10) == ["i1", "i3"]


def test_full_node_keeps_items_that_may_have_been_evicted() -> None:
    # Node of capacity 3 now holds i3..i5: i1 and i2 may have rolled off (oldest first), but i4 missing
    # while the older i3 is still there can only be a retraction.
    mirrored = states("i1", "i2", "i3", "i4", "i5")
    assert retracted_while_away(mirrored, ["i3", "i5", "i6"], remote_capacity=3) == ["i4"]


def test_already_deleted_and_new_items_are_not_reported() -> None:
    mirrored = states("i1", "i2", deleted=("i1",))
    assert retracted_while_away(mirrored, ["i2", "i9"], remote_capacity=10) == []


def test_nothing_known_is_present_on_a_full_node_means_no_inference() -> None:
    assert retracted_while_away(states("i1", "i2"), ["x", "y"], remote_capacity=2) == []


def test_reconnect_backoff_grows_is_capped_and_jittered() -> None:
    delays = [backoff_delay(attempt) for attempt in range(1, 21)]
    assert delays[0] <= 1.0 < delays[3]
    assert max(delays) <= RECONNECT_MAX_DELAY
    assert min(delays[-5:]) >= RECONNECT_MAX_DELAY / 2
    assert len(set(delays[-5:])) > 1  # jitter: bridges restarted together spread out
