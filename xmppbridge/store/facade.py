"""``Store``: the one object the shells hold. Each method is one committed transaction (or one read).

The connection may be used from several threads (e.g. via ``asyncio.to_thread``); a lock serialises
them. Other processes open their own ``Store`` on the same file; SQLite's WAL locking arbitrates.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from xmppbridge.iodef.model import Incident
from xmppbridge.store import db, entries, outbox, rejects
from xmppbridge.store.entries import Entry, EntryVersion, Origin, UpsertResult
from xmppbridge.store.outbox import OutboxItem
from xmppbridge.store.rejects import Reject

T = TypeVar("T")


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = db.connect(self.path)

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, db.transaction(self.conn) as conn:
            yield conn

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return query(self.conn)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- outbox -------------------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        node: str,
        item_id: str,
        payload: bytes,
        incident: Incident,
        version: str,
        source: str,
        signer_subject: str = "",
        signer_fingerprint: str = "",
    ) -> int:
        """Queue a signed item for publishing; the signer is copied into the entry once published."""
        with self._write() as conn:
            return outbox.enqueue(
                conn,
                node=node,
                item_id=item_id,
                payload=payload,
                incident=incident,
                version=version,
                source=source,
                signer_subject=signer_subject,
                signer_fingerprint=signer_fingerprint,
            )

    def pending(self, limit: int = 64) -> list[OutboxItem]:
        """Pending items, oldest first."""
        return self._read(lambda conn: outbox.pending(conn, limit))

    def outbox_item(self, outbox_id: int) -> OutboxItem | None:
        return self._read(lambda conn: outbox.get(conn, outbox_id))

    def mark_published(self, outbox_id: int, *, service: str) -> None:
        """Mark published and upsert the matching local entry, in one transaction. LookupError if unknown."""
        with self._write() as conn:
            outbox.mark_published(conn, outbox_id, service=service)

    def mark_failed(self, outbox_id: int, reason: str) -> None:
        """LookupError if unknown."""
        with self._write() as conn:
            outbox.mark_failed(conn, outbox_id, reason)

    def outbox_depth(self) -> int:
        """Number of pending items."""
        return self._read(outbox.depth)

    # -- entries ------------------------------------------------------------------------------------

    def upsert_entry(
        self,
        *,
        service: str,
        node: str,
        item_id: str,
        origin: Origin,
        incident: Incident,
        version: str,
        xml: bytes,
        signer_subject: str,
        signer_fingerprint: str,
    ) -> UpsertResult:
        """Returns "new", "updated" or "unchanged" (identical xml bytes). Updates keep received_at and
        published_at, bump updated_at and keep the previous document in entry_versions."""
        with self._write() as conn:
            return entries.upsert(
                conn,
                service=service,
                node=node,
                item_id=item_id,
                origin=origin,
                incident=incident,
                version=version,
                xml=xml,
                signer_subject=signer_subject,
                signer_fingerprint=signer_fingerprint,
            )

    def mark_deleted(self, service: str, node: str, item_id: str) -> bool:
        with self._write() as conn:
            return entries.mark_deleted(conn, service, node, item_id)

    def entries(
        self, *, restrictions: Collection[str] | None = None, limit: int = 50, offset: int = 0
    ) -> list[Entry]:
        """Visible entries, newest ``updated_at`` first. ``restrictions=None``: all; empty: none."""
        return self._read(
            lambda conn: entries.list_entries(conn, restrictions=restrictions, limit=limit, offset=offset)
        )

    def count_entries(self, restrictions: Collection[str] | None = None) -> int:
        return self._read(lambda conn: entries.count(conn, restrictions=restrictions))

    def entry(self, entry_id: int) -> Entry | None:
        """By id, including deleted entries (check ``Entry.deleted``)."""
        return self._read(lambda conn: entries.get(conn, entry_id))

    def find_entry(self, service: str, node: str, item_id: str) -> Entry | None:
        return self._read(lambda conn: entries.find(conn, service, node, item_id))

    def entry_versions(self, entry_id: int) -> list[EntryVersion]:
        """Superseded documents, oldest first."""
        return self._read(lambda conn: entries.versions(conn, entry_id))

    # -- rejects ------------------------------------------------------------------------------------

    def add_reject(
        self,
        *,
        source: str,
        service: str | None,
        node: str | None,
        item_id: str | None,
        reason: str,
        message: str,
        raw: bytes,
    ) -> int:
        with self._write() as conn:
            return rejects.add(
                conn,
                source=source,
                service=service,
                node=node,
                item_id=item_id,
                reason=reason,
                message=message,
                raw=raw,
            )

    def rejects(self, limit: int = 100) -> list[Reject]:
        """Newest first."""
        return self._read(lambda conn: rejects.recent(conn, limit))

    def count_rejects(self) -> int:
        return self._read(rejects.count)
