"""What ``/metrics`` counts, read from the store at scrape time (``xmppbridge.metrics``), so the figures
are right across restarts and include what other processes did. Reads only: a scrape never writes to,
or locks, the store."""

from __future__ import annotations

from datetime import datetime

from xmppbridge.store.db import from_text, parse_time
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
