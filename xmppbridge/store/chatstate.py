"""What chat remembers across restarts: who subscribed to which category, which subscribers an operator
paused, and how far the change log has been announced. In the store's schema since version 8, through the
store's own connections (``Store.chat``), so that it moves with the store (``store copy``) and works the
same on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable

from xmppbridge.store import db
from xmppbridge.store.sql import Transactions

# Schema version 8 (store.migrations).
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS chat_subscriptions (
        jid TEXT NOT NULL,  -- bare JID of a person
        restriction TEXT NOT NULL,
        purpose TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (jid, restriction, purpose)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS chat_subscriptions_category ON chat_subscriptions (restriction, purpose)",
    """
    CREATE TABLE IF NOT EXISTS chat_paused (  -- people or rooms an operator silenced (ad-hoc pause)
        jid TEXT PRIMARY KEY,
        paused_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS chat_cursor (  -- last change-log sequence number announced, per collection
        collection TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    )
    """,
)


class ChatState:
    def __init__(self, sessions: Transactions) -> None:
        self._sessions = sessions

    def subscribe(self, jid: str, pairs: Iterable[tuple[str, str]]) -> None:
        stamp = db.format_time(db.now())
        with self._sessions.write() as conn:
            conn.executemany("INSERT INTO chat_subscriptions VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                             [(jid, r, p, stamp) for r, p in pairs])

    def unsubscribe(self, jid: str, pairs: Iterable[tuple[str, str]]) -> int:
        with self._sessions.write() as conn:
            return sum(conn.execute("DELETE FROM chat_subscriptions WHERE jid = ? AND restriction = ?"
                                    " AND purpose = ?", (jid, r, p)).rowcount for r, p in pairs)

    def subscriptions(self, jid: str) -> set[tuple[str, str]]:
        rows = self._sessions.read(lambda conn: conn.execute(
            "SELECT restriction, purpose FROM chat_subscriptions WHERE jid = ?", (jid,)).fetchall())
        return {(row["restriction"], row["purpose"]) for row in rows}

    def subscribers(self, restriction: str, purpose: str) -> list[str]:
        """Subscribers of a category, paused ones left out."""
        rows = self._sessions.read(lambda conn: conn.execute(
            "SELECT jid FROM chat_subscriptions WHERE restriction = ? AND purpose = ?"
            " AND jid NOT IN (SELECT jid FROM chat_paused) ORDER BY jid", (restriction, purpose)).fetchall())
        return [row["jid"] for row in rows]

    def set_paused(self, jid: str, paused: bool) -> bool:
        """True when that changed something."""
        with self._sessions.write() as conn:
            if paused:
                cursor = conn.execute("INSERT INTO chat_paused VALUES (?, ?) ON CONFLICT DO NOTHING",
                                      (jid, db.format_time(db.now())))
            else:
                cursor = conn.execute("DELETE FROM chat_paused WHERE jid = ?", (jid,))
            return cursor.rowcount > 0

    def is_paused(self, jid: str) -> bool:
        row = self._sessions.read(lambda conn: conn.execute(
            "SELECT 1 FROM chat_paused WHERE jid = ?", (jid,)).fetchone())
        return row is not None

    def cursors(self) -> dict[str, int]:
        """The last sequence number announced, per collection that has one: one read for all of them
        (the watcher looks every half second; on PostgreSQL each read is a round trip)."""
        rows = self._sessions.read(lambda conn: conn.execute(
            "SELECT collection, seq FROM chat_cursor").fetchall())
        return {row["collection"]: row["seq"] for row in rows}

    def set_cursors(self, moved: dict[str, int]) -> None:
        """Move the cursors of several collections, in one transaction (all or none)."""
        if not moved:
            return
        with self._sessions.write() as conn:
            conn.executemany("INSERT INTO chat_cursor VALUES (?, ?) ON CONFLICT (collection)"
                             " DO UPDATE SET seq = excluded.seq", list(moved.items()))
