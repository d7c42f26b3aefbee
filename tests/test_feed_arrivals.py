"""The receiving side's delivery latency (feed/arrivals.py): per reporting member and UTC day, from the
time the signed document states to our first receipt, with clock skew counted apart, not hidden."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from xmppbridge.feed.arrivals import Arrivals, per_member_and_day

DAY = datetime(2026, 12, 2, 9, tzinfo=UTC)
DAYS = ["2026-12-01", "2026-12-02"]


def test_median_and_p95_per_member_and_day_from_stated_to_received() -> None:
    rows = [("cert-a", DAY - timedelta(seconds=s), DAY) for s in (1, 2, 3, 4, 100)]
    rows += [("cert-b", DAY - timedelta(days=1, seconds=10), DAY - timedelta(days=1))]
    assert per_member_and_day(rows, DAYS) == {
        "cert-a": {"2026-12-02": Arrivals(median=3.0, p95=100.0, timed=5, ahead=0, untimed=0)},
        "cert-b": {"2026-12-01": Arrivals(median=10.0, p95=10.0, timed=1, ahead=0, untimed=0)},
    }


def test_an_item_stored_before_the_time_it_states_counts_as_zero_and_apart() -> None:
    rows = [("cert-a", DAY + timedelta(minutes=5), DAY),  # the sender's clock is ahead of ours
            ("cert-a", DAY - timedelta(seconds=30), DAY), ("cert-a", DAY - timedelta(seconds=60), DAY)]
    [found] = per_member_and_day(rows, DAYS)["cert-a"].values()
    assert found == Arrivals(median=30.0, p95=60.0, timed=3, ahead=1, untimed=0)


def test_items_stating_no_time_or_outside_the_days_are_not_in_the_figures() -> None:
    rows = [("cert-a", None, DAY), ("cert-a", DAY - timedelta(days=9), DAY - timedelta(days=5))]
    assert per_member_and_day(rows, DAYS) == {
        "cert-a": {"2026-12-02": Arrivals(median=0.0, p95=0.0, timed=0, ahead=0, untimed=1)}}
    assert per_member_and_day([], DAYS) == {}
