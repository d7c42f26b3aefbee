"""What ``/metrics`` counts, read from the store at scrape time (``process.metrics``), so the figures
are right across restarts and include what other processes did. Reads only: a scrape never writes to,
or locks, the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from xmppbridge.store.db import from_text, parse_time, to_text
from xmppbridge.store.sql import Connection

QUERIES = {
    "published": "SELECT action, count(*) FROM outbox WHERE status = 'published' GROUP BY action",
    "failed": "SELECT count(*) FROM outbox WHERE status = 'failed'",
    "depth": "SELECT count(*) FROM outbox WHERE status = 'pending'",
    # Each accepted version of a remote item is one revision of its entry.
    "received": "SELECT CAST(coalesce(sum(revision), 0) AS BIGINT) FROM entries WHERE origin = 'remote'",
    # One refusal per quarantine record: the same bytes offered again are counted apart (seen_count).
    "rejected": "SELECT reason, count(*) FROM rejects GROUP BY reason",
    "redelivered": "SELECT CAST(coalesce(sum(seen_count - 1), 0) AS BIGINT) FROM rejects",
    "held": "SELECT count(*) FROM rejects WHERE released_at IS NULL",
    "entries": "SELECT origin, effective_restriction, count(*) FROM entries WHERE deleted_at IS NULL"
               " GROUP BY origin, effective_restriction",
    "connection": "SELECT value FROM bridge_state WHERE key = 'connection'",
    "peers": "SELECT service, reachable, since FROM peers ORDER BY service",
    "approvals": "SELECT state, count(*) FROM approvals GROUP BY state",
}

Counts = dict[str, list[tuple[object, ...]]]


def counts(conn: Connection) -> Counts:
    """Each query's rows as tuples. Sums are cast: PostgreSQL's sum of bigints is numeric."""
    return {name: [tuple(row) for row in conn.execute(sql).fetchall()] for name, sql in QUERIES.items()}


def last_outbox_id(conn: Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])


def completed_since(conn: Connection, after: int) -> list[tuple[int, datetime, datetime | None]]:
    """Outbox items done (published or failed) with ids above ``after``: (id, queued, published)."""
    rows = conn.execute("SELECT id, created_at, published_at FROM outbox WHERE id > ? AND status != 'pending'"
                        " ORDER BY id", (after,)).fetchall()
    return [(row[0], parse_time(row[1]), from_text(row[2])) for row in rows]


@dataclass(frozen=True)
class Activity:
    """What the operators' dashboard draws, since a moment (feed/dashboard.py)."""

    stored: list[tuple[str, str, str, int]]  # (UTC day, reporting CSIRT, restriction, entries first stored)
    refusals: list[tuple[str, int]]  # (reason, quarantine records), all time
    # (queued, published) of each outbox item published since, and (queued, None) of each one waiting:
    # the publish delays and the outbox's depth over time.
    outbox: list[tuple[datetime, datetime | None]]
    pending: list[tuple[str, int]]  # (node, outbox items waiting)
    # (reporting CSIRT, time its document states or None, first stored) of each mirrored entry first
    # stored since: the receiving side's delivery latency (feed/arrivals.py).
    arrivals: list[tuple[str, datetime | None, datetime]]


# The newest published (and, apart, waiting) outbox items and mirrored entries the dashboard draws at
# most: a bound on one page's work.
MAX_DELAYS = 100_000

# What ``activity`` and ``QUERIES`` read, as indexes that hold every column they read (schema 12), so that
# they read index entries in the index's order and never the tables: without them each query scanned
# every entry (or every published outbox item), 2 s each on a million entries.
INDEXES = (
    # stored per day: a range of received_at, grouped
    "CREATE INDEX IF NOT EXISTS entries_received ON entries (received_at, id_name, effective_restriction)",
    # arrivals: the remote ones of the range, newest first
    "CREATE INDEX IF NOT EXISTS entries_arrivals ON entries (origin, received_at, id_name, published_at)",
    # publish delays: the published items of the window, newest first
    "CREATE INDEX IF NOT EXISTS outbox_published ON outbox (status, published_at, created_at)",
    # /metrics: entries per origin and collection, and the remote revisions received (QUERIES), from an
    # index a tenth of the table's size instead of the table, at every scrape
    "CREATE INDEX IF NOT EXISTS entries_counted ON entries"
    " (origin, effective_restriction, deleted_at, revision)",
)


# The dashboard's reads of a window (``activity``); all but the quarantine's and the waiting outbox's
# are answered from ``INDEXES`` alone (tests/test_store_counts.py).
ACTIVITY = {
    "stored": "SELECT substr(received_at, 1, 10) AS day, id_name, effective_restriction, count(*) AS n"
              " FROM entries WHERE received_at >= ?"
              " GROUP BY substr(received_at, 1, 10), id_name, effective_restriction ORDER BY 1, 2, 3",
    "refusals": "SELECT reason, count(*) AS n FROM rejects GROUP BY reason ORDER BY 2 DESC, 1",
    # Bounded by the window and by MAX_DELAYS, newest first.
    "delays": "SELECT created_at, published_at FROM outbox WHERE status = 'published' AND published_at >= ?"
              " ORDER BY published_at DESC LIMIT ?",
    "waiting": "SELECT created_at FROM outbox WHERE status = 'pending' ORDER BY id LIMIT ?",
    "arrivals": "SELECT id_name, published_at, received_at FROM entries"
                " WHERE origin = 'remote' AND received_at >= ? ORDER BY received_at DESC LIMIT ?",
    "pending": "SELECT node, count(*) AS n FROM outbox WHERE status = 'pending' GROUP BY node"
               " ORDER BY 2 DESC, 1",
}


def activity(conn: Connection, since: datetime) -> Activity:
    stamp = to_text(since)
    stored = conn.execute(ACTIVITY["stored"], (stamp,)).fetchall()
    refusals = conn.execute(ACTIVITY["refusals"]).fetchall()
    delays = conn.execute(ACTIVITY["delays"], (stamp, MAX_DELAYS)).fetchall()
    waiting = conn.execute(ACTIVITY["waiting"], (MAX_DELAYS,)).fetchall()
    arrivals = conn.execute(ACTIVITY["arrivals"], (stamp, MAX_DELAYS)).fetchall()
    pending = conn.execute(ACTIVITY["pending"]).fetchall()
    return Activity(
        stored=[(row[0], row[1], row[2], int(row[3])) for row in stored],
        refusals=[(row[0], int(row[1])) for row in refusals],
        outbox=[(parse_time(row[0]), parse_time(row[1])) for row in delays]
        + [(parse_time(row[0]), None) for row in waiting],
        pending=[(row[0], int(row[1])) for row in pending],
        arrivals=[(row[0], from_text(row[1]), parse_time(row[2])) for row in arrivals],
    )
