"""What the operators' dashboard reads (``store.counts.activity``), on both backends: the window's
entries per day, member and restriction, arrivals newest first by receipt and bounded, publish delays
newest first; and on SQLite, that each of its queries is answered from its index (schema 12) alone,
without reading the tables: the page stays cheap on a store of a million entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.test_feed_support import store_document
from tests.test_store import make_incident
from xmppbridge.store import Store, counts
from xmppbridge.store.db import to_text
from xmppbridge.store.items import SignedItem

DAY = datetime(2026, 11, 20, 9, tzinfo=UTC)
SAMPLE = (SAMPLES / "01-phishing-public-v2.xml").read_bytes()


def received(store: Store, incident_id: str, when: datetime) -> None:
    """Mark a stored entry as first stored at ``when`` (what a store built over days would hold)."""
    store.sql("UPDATE entries SET received_at = ?, updated_at = ? WHERE incident_id = ?",
              (to_text(when), to_text(when), incident_id))


@pytest.mark.parametrize("store_target", ["sqlite", "postgresql"], indirect=True)
def test_activity_counts_the_window_per_day_and_takes_the_newest_arrivals_first(
        store_target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(store_target) as store:
        for n, when in enumerate([DAY - timedelta(days=2), DAY, DAY + timedelta(hours=1),
                                  DAY + timedelta(days=1), DAY + timedelta(days=1, hours=2)]):
            incident_id = f"A-2024-{n:04d}"
            store_document(store, SAMPLE.replace(b"A-2024-0101", incident_id.encode()),
                           origin="local" if n == 3 else "remote")
            received(store, incident_id, when)
        activity = store.activity(DAY - timedelta(hours=1))
        assert activity.stored == [("2026-11-20", "csirt.a.test", "public", 2),
                                   ("2026-11-21", "csirt.a.test", "public", 2)]
        assert [r for _, _, r in activity.arrivals] == [DAY + timedelta(days=1, hours=2),
                                                        DAY + timedelta(hours=1), DAY]  # remote only
        monkeypatch.setattr(counts, "MAX_DELAYS", 2)  # the bound keeps the newest
        assert [r for _, _, r in store.activity(DAY - timedelta(hours=1)).arrivals] == [
            DAY + timedelta(days=1, hours=2), DAY + timedelta(hours=1)]


@pytest.mark.parametrize("store_target", ["sqlite", "postgresql"], indirect=True)
def test_activity_gives_the_newest_publish_delays_within_the_window(
        store_target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(store_target) as store:
        for n in range(4):
            signed = SignedItem("iodef/public/other", f"out-{n}", b"<p/>", make_incident(n), "2.0")
            item = store.enqueue(signed, source="cli:x")
            store.mark_published(item, service="pubsub.a.test")
            queued, published = DAY + timedelta(hours=n), DAY + timedelta(hours=n, seconds=n + 1)
            store.sql("UPDATE outbox SET created_at = ?, published_at = ? WHERE id = ?",
                      (to_text(queued), to_text(published), item))
        delays = [(DAY + timedelta(hours=n), DAY + timedelta(hours=n, seconds=n + 1)) for n in range(4)]
        # newest first, those published in the window
        assert store.activity(DAY + timedelta(minutes=30)).outbox == delays[:0:-1]
        monkeypatch.setattr(counts, "MAX_DELAYS", 1)
        assert store.activity(DAY).outbox == delays[3:]


def test_each_query_of_a_window_reads_its_covering_index_only(tmp_path: Path) -> None:
    """SQLite's plans, which follow from the indexes alone (no statistics): no table read and no sort."""
    with Store(tmp_path / "store.sqlite") as store:
        for name in ("stored", "delays", "arrivals"):
            sql = counts.ACTIVITY[name]
            params = (to_text(DAY), 10)[:sql.count("?")]
            plan = [row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            assert plan[0].startswith("SEARCH") and "USING COVERING INDEX" in plan[0], (name, plan)
            assert not any("ORDER BY" in step for step in plan), (name, plan)


def test_the_scrapes_counts_of_entries_read_an_index_not_the_table(tmp_path: Path) -> None:
    """/metrics counts every entry at each scrape: from ``entries_counted``, not a scan of the table."""
    with Store(tmp_path / "store.sqlite") as store:
        for name in ("received", "entries"):
            plan = [row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + counts.QUERIES[name])]
            assert plan == [plan[0]] and "USING COVERING INDEX entries_counted" in plan[0], (name, plan)
