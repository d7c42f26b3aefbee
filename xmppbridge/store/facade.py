"""``Store``: the one object the shells hold. Each method is one committed transaction (or one read),
except inside ``Store.batch()``, where writes are committed together at its end.

The connection may be used from several threads (e.g. via ``asyncio.to_thread``); a lock serialises
them. Other processes open their own ``Store`` on the same file; SQLite's WAL locking arbitrates.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from xmppbridge.iodef.model import Incident
from xmppbridge.peers import Outcome, PeerHealth
from xmppbridge.store import approvals, db, entries, feedviews, outbox, peers, rejects, search, subscriptions
from xmppbridge.store.approvals import Approval
from xmppbridge.store.entries import Entry, EntryVersion, Origin, UpsertResult
from xmppbridge.store.feedviews import Change, Revision
from xmppbridge.store.outbox import OutboxItem
from xmppbridge.store.rejects import Reject
from xmppbridge.store.search import Readable, SearchQuery
from xmppbridge.store.subscriptions import ItemState, SubscriptionState

T = TypeVar("T")


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = db.connect(self.path)
        self._batched = False  # inside batch(): writes are savepoints of one transaction

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if not self._batched:
                with db.transaction(self.conn) as conn:
                    yield conn
                return
            if not self.conn.in_transaction:  # the batch's first write opens its transaction
                self.conn.execute("BEGIN IMMEDIATE")
            with db.savepoint(self.conn) as conn:
                yield conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes made inside share one transaction, committed on the way out (also when the body
        raises: each write is atomic on its own, as a savepoint, so what was done is kept). Many small
        writes, one commit: the receive path stores the notifications of up to 20 ms in a batch, which
        at full rate saves most of the per-item commit cost (BENCHMARKS.md §3).

        Meant for writes made synchronously, in one go: the write lock is held until the end, so other
        processes' writers wait (busy_timeout). A batch inside a batch joins the outer one."""
        with self._lock:
            outer, self._batched = not self._batched, True
        try:
            yield
        finally:
            if outer:
                with self._lock:
                    self._batched = False
                    # Nothing to commit when the batch wrote nothing (it then costs nothing), nor when
                    # the store was closed meanwhile (at shutdown, the server's last bytes still arrive).
                    conn = self._conn
                    if conn is not None and conn.in_transaction:
                        try:
                            conn.execute("COMMIT")
                        except sqlite3.Error:
                            conn.execute("ROLLBACK")
                            raise

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
        action: str = "publish",
    ) -> int:
        """Queue a signed item for publishing (or, with ``action="retract"``, an item to retract); the
        signer is copied into the entry once published."""
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
                action=action,
            )

    def pending(self, limit: int = 64, exclude: Collection[int] = ()) -> list[OutboxItem]:
        """Pending items, oldest first, without those whose ids are in ``exclude``."""
        return self._read(lambda conn: outbox.pending(conn, limit, exclude))

    def outbox_item(self, outbox_id: int) -> OutboxItem | None:
        return self._read(lambda conn: outbox.get(conn, outbox_id))

    def outbox_ids_for_source(self, source: str) -> list[int]:
        """Outbox items submitted under ``source`` (e.g. a watched-folder file), oldest first."""
        return self._read(lambda conn: outbox.ids_for_source(conn, source))

    def mark_published(self, *outbox_ids: int, service: str) -> None:
        """Mark published and upsert the matching local entries, all in one transaction (one commit per
        round of the outbox drain, not one per item). LookupError if one is unknown."""
        with self._write() as conn:
            for outbox_id in outbox_ids:
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

    # -- feed views and search (see feedviews, search) -------------------------------------------------

    def current_page(self, collection: str, purposes: Collection[str] | None, *, limit: int,
                     before: int | None = None, after: int | None = None) -> list[Change]:
        return self._read(lambda conn: feedviews.current_page(conn, collection, purposes, limit=limit,
                                                              before=before, after=after))

    def has_current(self, collection: str, purposes: Collection[str] | None, *, above: int | None = None,
                    below: int | None = None) -> bool:
        return self._read(lambda conn: feedviews.has_current(conn, collection, purposes, above=above,
                                                             below=below))

    def archive(self, collection: str, purposes: Collection[str] | None, first: int,
                last: int) -> list[Change]:
        return self._read(lambda conn: feedviews.archive(conn, collection, purposes, first, last))

    def last_seq(self, collection: str) -> int:
        return self._read(lambda conn: feedviews.last_seq(conn, collection))

    def revisions(self, entry_id: int) -> list[Revision]:
        """Every document version of an entry, newest first."""
        return self._read(lambda conn: feedviews.revisions(conn, entry_id))

    def revision_xml(self, entry_id: int, number: int) -> bytes | None:
        return self._read(lambda conn: feedviews.revision_xml(conn, entry_id, number))

    def search(self, query: SearchQuery, readable: Readable, *, limit: int, offset: int = 0) -> list[Entry]:
        return self._read(lambda conn: search.search(conn, query, readable, limit=limit, offset=offset))

    def count_matches(self, query: SearchQuery, readable: Readable, *, cap: int) -> int:
        return self._read(lambda conn: search.count(conn, query, readable, cap=cap))

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

    def rejects(self, limit: int = 100, *, held_only: bool = False,
                reason: str | None = None) -> list[Reject]:
        """Quarantined items, newest first; ``held_only`` leaves out released ones."""
        return self._read(lambda conn: rejects.recent(conn, limit, held_only=held_only, reason=reason))

    def count_rejects(self, *, held_only: bool = False) -> int:
        return self._read(lambda conn: rejects.count(conn, held_only=held_only))

    def held_reject_ids(self, service: str, node: str) -> set[str]:
        """Item ids of ``node`` held in the quarantine."""
        return self._read(lambda conn: rejects.held_item_ids(conn, service, node))

    def reject_seen_again(self, service: str, node: str, item_ids: list[str]) -> None:
        with self._write() as conn:
            rejects.seen_again(conn, service, node, item_ids)

    def reject(self, reject_id: int) -> Reject | None:
        return self._read(lambda conn: rejects.get(conn, reject_id))

    def release_reject(self, reject_id: int, resolution: str) -> None:
        """Stop holding it (it was mirrored, or is superseded); the record stays until purged."""
        with self._write() as conn:
            rejects.mark_released(conn, reject_id, resolution)

    def refuse_reject_again(self, reject_id: int, reason: str, message: str) -> None:
        with self._write() as conn:
            rejects.mark_refused_again(conn, reject_id, reason, message)

    def purge_rejects(self, *, ids: list[int] | None = None, before: datetime | None = None,
                      released_only: bool = False) -> int:
        """Delete quarantine records by id and/or received before ``before``; how many were deleted."""
        with self._write() as conn:
            return rejects.purge(conn, ids=ids, before=before, released_only=released_only)

    # -- subscriptions and bridge state (catch-up, `xmppbridge status`) -------------------------------

    def record_subscribed(self, service: str, node: str) -> None:
        with self._write() as conn:
            subscriptions.record_subscribed(conn, service, node)

    def record_item(self, service: str, node: str) -> None:
        with self._write() as conn:
            subscriptions.record_item(conn, service, node)

    def record_sync(self, service: str, node: str) -> None:
        with self._write() as conn:
            subscriptions.record_sync(conn, service, node)

    def subscriptions(self) -> list[SubscriptionState]:
        return self._read(subscriptions.subscriptions)

    def item_states(self, service: str, node: str) -> list[ItemState]:
        """The mirror's remote items of one node, deleted ones included."""
        return self._read(lambda conn: subscriptions.item_states(conn, service, node))

    def set_state(self, key: str, value: str) -> None:
        with self._write() as conn:
            subscriptions.set_state(conn, key, value)

    def state(self) -> dict[str, tuple[str, datetime]]:
        return self._read(subscriptions.get_state)

    # -- peer health (xmppbridge.peers) -----------------------------------------------------------------

    def record_peer(self, service: str, outcome: Outcome) -> None:
        with self._write() as conn:
            peers.record(conn, service, outcome, db.now())

    def forget_peers_except(self, services: list[str]) -> None:
        with self._write() as conn:
            peers.forget_others(conn, services)

    def peers(self) -> list[PeerHealth]:
        return self._read(peers.peers)

    # -- subscription requests held for an operator (store.approvals) -----------------------------

    def approval_requested(self, node: str, jid: str, subid: str | None = None) -> Approval:
        with self._write() as conn:
            return approvals.request(conn, node, jid, subid, db.now())

    def decide_approval(self, node: str, jid: str, state: str, by: str) -> Approval | None:
        with self._write() as conn:
            return approvals.decide(conn, node, jid, state, by, db.now())

    def withdraw_approval_request(self, node: str, jid: str) -> bool:
        with self._write() as conn:
            return approvals.withdraw(conn, node, jid)

    def approval_sent(self, approval: Approval) -> None:
        assert approval.decided_at is not None
        with self._write() as conn:
            approvals.mark_sent(conn, approval.node, approval.jid, approval.decided_at, db.now())

    def approval(self, node: str, jid: str) -> Approval | None:
        return self._read(lambda conn: approvals.get(conn, node, jid))

    def approvals(self, states: tuple[str, ...] = approvals.STATES) -> list[Approval]:
        return self._read(lambda conn: approvals.listed(conn, states))

    def undelivered_decisions(self) -> list[Approval]:
        return self._read(approvals.undelivered)

    def approved_jids(self, node: str) -> frozenset[str]:
        """Bridges an operator approved on ``node`` beyond its audience (``store.approvals``)."""
        return self._read(lambda conn: approvals.approved_jids(conn, node))
