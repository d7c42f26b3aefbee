"""``Store``: the one object the shells hold. Each method is one committed transaction (or one read),
except inside ``Store.batch()``, where writes are committed together at its end. Connections,
transactions and the two backends are ``store.sessions``'.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from xmppbridge.iodef.indicators import Indicator
from xmppbridge.peers import Outcome, PeerHealth
from xmppbridge.store import (
    approvals,
    counts,
    db,
    entries,
    feedviews,
    indicatorindex,
    objectindex,
    outbox,
    peers,
    rejects,
    search,
    subscriptions,
)
from xmppbridge.store.approvals import Approval
from xmppbridge.store.chatstate import ChatState
from xmppbridge.store.entries import Entry, EntryVersion, Head, Origin, UpsertResult
from xmppbridge.store.feedviews import Change, Document, Revision
from xmppbridge.store.items import Refused, SignedItem
from xmppbridge.store.outbox import OutboxItem
from xmppbridge.store.rejects import Reject
from xmppbridge.store.search import Readable, SearchQuery
from xmppbridge.store.sessions import Sessions
from xmppbridge.store.sql import Connection
from xmppbridge.store.subscriptions import ItemState, SubscriptionState

T = TypeVar("T")


def _returns_rows(statement: str) -> bool:
    head = statement.lstrip().split(None, 1)[0].upper()
    return head in ("SELECT", "WITH", "VALUES", "EXPLAIN", "PRAGMA") or "RETURNING" in statement.upper()


class Store:
    def __init__(self, target: str | Path) -> None:
        """``target``: an SQLite file path, or a ``postgresql://`` URL (``store.pg``)."""
        self.path = str(target)  # the file or URL, for messages
        self._sessions = Sessions(self.path)
        self.chat = ChatState(self._sessions)  # chat's subscriptions, pauses and cursors

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """"sqlite" or "postgresql"."""
        return self._sessions.dialect_name

    @property
    def conn(self) -> Connection:
        """The SQLite connection itself, for tests and tools that look inside the file (pragmas, query
        plans). A PostgreSQL store has none: use ``sql``."""
        return self._sessions.sqlite_connection()

    def transaction(self) -> AbstractContextManager[Connection]:
        """One write transaction on a connection of the store, for the table modules' functions called
        directly: tests, and tools that move whole tables (``store copy``)."""
        return self._sessions.write()

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement in its own transaction, in the table modules' SQL (``store.sql``); its
        rows. For tests and operators' tools, never the product's own paths."""
        with self._sessions.write() as conn:
            cursor = conn.execute(statement, params)
            return list(cursor.fetchall()) if _returns_rows(statement) else []

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes inside share one transaction (``Sessions.batch``)."""
        with self._sessions.batch():
            yield

    def _write(self, *, pipelined: bool = False) -> AbstractContextManager[Connection]:
        return self._sessions.write(pipelined=pipelined)

    def _read(self, query: Callable[[Connection], T]) -> T:
        return self._sessions.read(query)

    def close(self) -> None:
        self._sessions.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- outbox -------------------------------------------------------------------------------------

    def enqueue(self, item: SignedItem, *, source: str, action: str = "publish") -> int:
        """Queue a signed item for publishing (or, with ``action="retract"``, an item to retract); the
        signer is copied into the entry once published. In a pipeline, as ``mark_published``, with
        nothing read inside: on PostgreSQL the new id is read after the pipeline has sent the ``COMMIT``
        too, one round trip for the whole submit instead of one for the id and one for the commit."""
        with self._write(pipelined=True) as conn:
            cursor = outbox.enqueue(conn, item, source=source, action=action)
            if conn.dialect.name == "sqlite":  # SQLite commits no transaction with a statement unread
                return db.inserted_id(cursor)
        return db.inserted_id(cursor)

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
        round of the outbox drain, not one per item). LookupError if one is unknown. In a pipeline: on
        PostgreSQL a round trip per read, not per statement (``Sessions.write``)."""
        with self._write(pipelined=True) as conn:
            outbox.mark_published(conn, outbox_ids, service=service)

    def mark_failed(self, outbox_id: int, reason: str) -> None:
        """LookupError if unknown."""
        with self._write() as conn:
            outbox.mark_failed(conn, outbox_id, reason)

    def outbox_depth(self) -> int:
        """Number of pending items."""
        return self._read(outbox.depth)

    # -- entries ------------------------------------------------------------------------------------

    def upsert_entry(self, service: str, item: SignedItem, *, origin: Origin) -> UpsertResult:
        """Returns "new", "updated" or "unchanged" (identical xml bytes). Updates keep received_at and
        published_at, bump updated_at and keep the previous document in entry_versions. In a pipeline,
        as ``mark_published``."""
        with self._write(pipelined=True) as conn:
            return entries.upsert(conn, service, item, origin=origin)

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

    def last_seqs(self, collections: Collection[str]) -> dict[str, int]:
        return self._read(lambda conn: feedviews.last_seqs(conn, collections))

    def revisions(self, entry_id: int) -> list[Revision]:
        """Every document version of an entry, newest first."""
        return self._read(lambda conn: feedviews.revisions(conn, entry_id))

    def revision_xml(self, entry_id: int, number: int) -> bytes | None:
        return self._read(lambda conn: feedviews.revision_xml(conn, entry_id, number))

    def current_documents(self, entry_ids: Collection[int]) -> dict[int, Document]:
        return self._read(lambda conn: feedviews.current_documents(conn, entry_ids))

    def stored_indicators(self, entry_ids: Collection[int]) -> dict[int, tuple[Indicator, ...]]:
        return self._read(lambda conn: indicatorindex.indicator_lists(conn, entry_ids))

    def seq_at(self, collection: str, moment: datetime) -> int:
        return self._read(lambda conn: feedviews.seq_at(conn, collection, moment))

    def live_holders(self, incident: str, *, other_than: str) -> list[int]:
        """The ids of the live entries holding the incident whose derived UUID is ``incident``, but those
        of service ``other_than``, oldest first: one indexed read, without the documents."""
        return self._read(lambda conn: indicatorindex.live_holding(conn, incident, other_than))

    def entries_holding(self, incident: str) -> list[Entry]:
        """The entries (deleted ones too, with their documents) holding the incident whose derived UUID
        (``iodef.uuids.incident_uuid``) is ``incident``."""
        return self._read(lambda conn: feedviews.entries_holding(conn, incident))

    def object_holders(self, object_id: str, collection: str, purposes: Collection[str] | None, *,
                       limit: int) -> list[int]:
        """The ids of the newest ``limit`` live entries of ``collection`` (of ``purposes``; None: any) that
        may hold the STIX object ``object_id`` (``store.objectindex``), newest first; a caller keeps those
        that do hold it."""
        return self._read(lambda conn: objectindex.holding(conn, object_id, collection, purposes,
                                                           limit=limit))

    def search(self, query: SearchQuery, readable: Readable, *, limit: int, offset: int = 0) -> list[Entry]:
        return self._read(lambda conn: search.search(conn, query, readable, limit=limit, offset=offset))

    def heads(self, readable: Readable, *, limit: int) -> list[Head]:
        return self._read(lambda conn: search.heads(conn, readable, limit=limit))

    def count_matches(self, query: SearchQuery, readable: Readable, *, cap: int) -> int:
        return self._read(lambda conn: search.count(conn, query, readable, cap=cap))

    # -- rejects ------------------------------------------------------------------------------------

    def add_reject(self, refused: Refused) -> int:
        """Hold a refused input; the id of its record (the held one, when the same bytes come again)."""
        with self._write() as conn:
            return rejects.add(conn, refused)

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

    # -- peer health (peers) ------------------------------------------------------------

    def record_peer(self, service: str, outcome: Outcome) -> None:
        with self._write() as conn:
            peers.record(conn, service, outcome, db.now())

    def forget_peers_except(self, services: list[str]) -> None:
        with self._write() as conn:
            peers.forget_others(conn, services)

    def peers(self) -> list[PeerHealth]:
        return self._read(peers.peers)

    # -- what /metrics counts (store.counts) ------------------------------------------------------------

    def counts(self) -> counts.Counts:
        return self._read(counts.counts)

    def last_outbox_id(self) -> int:
        return self._read(counts.last_outbox_id)

    def outbox_completed_since(self, after: int) -> list[tuple[int, datetime, datetime | None]]:
        return self._read(lambda conn: counts.completed_since(conn, after))

    def activity(self, since: datetime) -> counts.Activity:
        return self._read(lambda conn: counts.activity(conn, since))

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
