"""Opening an SQLite store: WAL mode, a busy timeout, and the schema brought up to date.

One long-lived connection in the bridge's process plus short-lived ones from CLI processes. WAL mode lets
readers run beside one writer; ``busy_timeout`` makes a second writer wait (up to 5 s) instead of
failing at once.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from xmppbridge.store.db import SCHEMA_VERSION
from xmppbridge.store.migrations import ensure_schema
from xmppbridge.store.sql import SqliteConnection

BUSY_TIMEOUT_MS = 5000
_SLOW_UPGRADE_SECONDS = 1.0  # a new or small store upgrades in milliseconds; a longer upgrade is logged

log = logging.getLogger(__name__)


def connect(path: str) -> SqliteConnection:
    """Open ``path`` in WAL mode with a busy timeout and make sure the schema exists."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=SqliteConnection)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # durable at each commit in WAL mode except on power loss
    started = time.perf_counter()
    if ensure_schema(conn):
        # A large upgrade leaves a WAL file as large as what it wrote (GBs for version 5 on a big store),
        # which keeps that size while this connection lives: copy it into the database and truncate it.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        seconds = time.perf_counter() - started
        if seconds >= _SLOW_UPGRADE_SECONDS:
            log.info("store %s: schema upgraded to version %d in %.0f s", path, SCHEMA_VERSION, seconds)
    # Only now: rebuilding a table (migrations._to_5) needs them off, and the pragma cannot change inside
    # the upgrade's transaction.
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


