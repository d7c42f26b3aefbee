"""Subscription requests held for an operator (RFC 8600 ``authorize``, XEP-0060 §8.6), one row per
(node, subscriber JID): who asked, when, and what the operator decided.

Requests from bridges in a node's audience are approved by the bridge itself and not stored here: a row
is an operator's business, and ``approved_jids`` must name only the bridges an operator let in beyond
the audience (the reconcile of node affiliations keeps them), never audience members that may later be
removed from the config.

The CLI decides by writing ``state``, ``decided_by`` and ``decided_at`` with ``sent_at`` NULL; the
running bridge sends each such decision to the pubsub service and sets ``sent_at`` (``undelivered``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from xmppbridge.store.db import format_time, from_text, parse_time
from xmppbridge.store.sql import Connection, Row

PENDING, APPROVED, DENIED = "pending", "approved", "denied"
STATES = (PENDING, APPROVED, DENIED)

# Schema version 7 (store.migrations).
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS approvals (
        node TEXT NOT NULL,
        jid TEXT NOT NULL,  -- the subscriber's bare JID, lower case
        subid TEXT,  -- the subscription id when the server gave one (ejabberd's §8.6 form has none)
        requested_at TEXT NOT NULL,  -- the first request
        requests INTEGER NOT NULL DEFAULT 1,  -- how often it was asked (re-subscriptions, get-pending)
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied')),
        decided_by TEXT,  -- an admin JID, or 'cli:<user>'
        decided_at TEXT,
        sent_at TEXT,  -- when the bridge sent the decision to the pubsub service; NULL: not yet
        PRIMARY KEY (node, jid)
    ) WITHOUT ROWID
    """,
)


@dataclass(frozen=True)
class Approval:
    node: str
    jid: str
    subid: str | None
    requested_at: datetime
    requests: int
    state: str
    decided_by: str | None
    decided_at: datetime | None
    sent_at: datetime | None


def request(conn: Connection, node: str, jid: str, subid: str | None, at: datetime) -> Approval:
    """Record a request (a new one as pending, a repeated one counted) and return the row as it is now."""
    conn.execute(
        "INSERT INTO approvals (node, jid, subid, requested_at, state) VALUES (?, ?, ?, ?, 'pending')"
        " ON CONFLICT (node, jid) DO UPDATE SET requests = approvals.requests + 1,"
        " subid = coalesce(excluded.subid, approvals.subid)",
        (node, jid, subid, format_time(at)))
    found = get(conn, node, jid)
    assert found is not None
    return found


def decide(conn: Connection, node: str, jid: str, state: str, by: str,
           at: datetime) -> Approval | None:
    """Set the operator's decision, to be sent by the bridge; None when nobody asked for (node, jid)."""
    if state not in (APPROVED, DENIED):
        raise ValueError(f"a decision is {APPROVED} or {DENIED}, not {state!r}")
    conn.execute("UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, sent_at = NULL"
                 " WHERE node = ? AND jid = ?", (state, by, format_time(at), node, jid))
    return get(conn, node, jid)


def withdraw(conn: Connection, node: str, jid: str) -> bool:
    """Drop a pending request that is no operator's to decide any more (its bridge joined the node's
    audience); whether there was one. Decided rows stay: they are the audit trail."""
    return conn.execute("DELETE FROM approvals WHERE node = ? AND jid = ? AND state = 'pending'",
                        (node, jid)).rowcount > 0


def mark_sent(conn: Connection, node: str, jid: str, decided_at: datetime, at: datetime) -> None:
    """The decision made at ``decided_at`` went out; a newer decision made meanwhile stays unsent."""
    conn.execute("UPDATE approvals SET sent_at = ? WHERE node = ? AND jid = ? AND decided_at = ?",
                 (format_time(at), node, jid, format_time(decided_at)))


def get(conn: Connection, node: str, jid: str) -> Approval | None:
    row = conn.execute("SELECT * FROM approvals WHERE node = ? AND jid = ?", (node, jid)).fetchone()
    return None if row is None else _approval(row)


def listed(conn: Connection, states: tuple[str, ...] = STATES) -> list[Approval]:
    among, values = conn.dialect.one_of("state", states)
    rows = conn.execute(f"SELECT * FROM approvals WHERE {among} ORDER BY requested_at, node, jid",
                        (values,)).fetchall()
    return [_approval(row) for row in rows]


def undelivered(conn: Connection) -> list[Approval]:
    rows = conn.execute("SELECT * FROM approvals WHERE sent_at IS NULL AND state != 'pending'"
                        " ORDER BY decided_at").fetchall()
    return [_approval(row) for row in rows]


def approved_jids(conn: Connection, node: str) -> frozenset[str]:
    """The bridges an operator approved on ``node`` beyond its audience: the affiliations' reconcile
    adds them to its target set, so that it does not remove them."""
    rows = conn.execute("SELECT jid FROM approvals WHERE node = ? AND state = 'approved'", (node,))
    return frozenset(row[0] for row in rows)


def _approval(row: Row) -> Approval:
    return Approval(row["node"], row["jid"], row["subid"], parse_time(row["requested_at"]), row["requests"],
                    row["state"], row["decided_by"], from_text(row["decided_at"]), from_text(row["sent_at"]))

