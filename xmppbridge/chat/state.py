"""What chat remembers across restarts, in the bridge's SQLite file: who subscribed to which category,
which subscribers an operator paused, and how far the change log has been announced.

Its own tables and its own connection (opened like the store's, WAL + busy timeout), so the store's
schema and migrations stay untouched; CLI processes may open it beside the running bridge.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from xmppbridge.store import db

_SCHEMA = (
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
    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._conn = db.connect(path)
        with db.transaction(self._conn) as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def subscribe(self, jid: str, pairs: Iterable[tuple[str, str]]) -> None:
        stamp = db.format_time(db.now())
        with self._lock, db.transaction(self._conn) as conn:
            conn.executemany("INSERT OR IGNORE INTO chat_subscriptions VALUES (?, ?, ?, ?)",
                             [(jid, r, p, stamp) for r, p in pairs])

    def unsubscribe(self, jid: str, pairs: Iterable[tuple[str, str]]) -> int:
        with self._lock, db.transaction(self._conn) as conn:
            return sum(conn.execute("DELETE FROM chat_subscriptions WHERE jid = ? AND restriction = ?"
                                    " AND purpose = ?", (jid, r, p)).rowcount for r, p in pairs)

    def subscriptions(self, jid: str) -> set[tuple[str, str]]:
        with self._lock:
            rows = self._conn.execute("SELECT restriction, purpose FROM chat_subscriptions WHERE jid = ?",
                                      (jid,)).fetchall()
        return {(row["restriction"], row["purpose"]) for row in rows}

    def subscribers(self, restriction: str, purpose: str) -> list[str]:
        """Subscribers of a category, paused ones left out."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT jid FROM chat_subscriptions WHERE restriction = ? AND purpose = ?"
                " AND jid NOT IN (SELECT jid FROM chat_paused) ORDER BY jid", (restriction, purpose)
            ).fetchall()
        return [row["jid"] for row in rows]

    def set_paused(self, jid: str, paused: bool) -> bool:
        """True when that changed something."""
        with self._lock, db.transaction(self._conn) as conn:
            if paused:
                cursor = conn.execute("INSERT OR IGNORE INTO chat_paused VALUES (?, ?)",
                                      (jid, db.format_time(db.now())))
            else:
                cursor = conn.execute("DELETE FROM chat_paused WHERE jid = ?", (jid,))
            return cursor.rowcount > 0

    def is_paused(self, jid: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM chat_paused WHERE jid = ?", (jid,)).fetchone()
        return row is not None

    def cursor(self, collection: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT seq FROM chat_cursor WHERE collection = ?",
                                     (collection,)).fetchone()
        return None if row is None else row["seq"]

    def set_cursor(self, collection: str, seq: int) -> None:
        with self._lock, db.transaction(self._conn) as conn:
            conn.execute("INSERT INTO chat_cursor VALUES (?, ?) ON CONFLICT (collection)"
                         " DO UPDATE SET seq = excluded.seq", (collection, seq))
