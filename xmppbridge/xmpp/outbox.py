"""Drain the store's outbox into PubSub: the publish path's XMPP end.

Items are committed to the outbox before anyone is told "accepted" (CLI, AtomPub, watched folder);
this loop publishes them with their deterministic item ids, so publishing one twice only overwrites it.
Retractions (AtomPub DELETE) go the same way; retracting an item twice, or one the node no longer has,
is done, not failed.

Up to ``PUBLISH_WINDOW`` IQs are in flight at once: one at a time, each item waits a full server round
trip (benchmark 2 in BENCHMARKS.md). Order still matters per PubSub item: a later version of an item,
or its retraction, must reach the server after the earlier one, so items sharing (node, item id) go one
after the other in a *chain*, and none overtakes an earlier one that is waiting to be retried.

The drain never stops to wait for a round to end: new chains are started while earlier ones are still
sending, so the window stays full under load, and items that went out are marked published in groups
(one transaction each) beside the sending. An earlier version waited for every chain of a round of 256
and then marked them, which left the server idle for a tenth of every round (BENCHMARKS.md §3). If the
process dies before an item is marked, it goes out again on restart, which only overwrites it with the
same bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from enum import Enum

from slixmpp.exceptions import IqError, IqTimeout

from xmppbridge.config.settings import Config
from xmppbridge.errors import InputRejected, PublishFailed
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.paths.publish import payload_namespace
from xmppbridge.policy.audiences import AUDIENCE_EMPTY
from xmppbridge.policy.nodes import check_publishable, node_access, parse_node_name
from xmppbridge.signing.wireform import wire_bytes
from xmppbridge.store import OutboxItem
from xmppbridge.store.contracts import Outbox
from xmppbridge.store.outbox import RETRACT
from xmppbridge.xmpp.component import BridgeComponent

log = logging.getLogger(__name__)

# Seconds between looks at the outbox. Other processes (the CLI) write there too; an empty look is one
# index probe, and a short interval keeps the publish latency well below the 200 ms target at 50/s.
OUTBOX_POLL = 0.02
RETRY_DELAY = 5.0
PUBLISH_WINDOW = 16  # IQs in flight; as the catch-up fetches, and the raw client in the benchmark
BATCH = 256  # items read from the outbox at a time
# New chains are started when fewer are under way: enough queued behind the window that it does not run
# dry before the next look, few enough that the outbox is not re-read at every look under load.
REFILL_BELOW = 2 * PUBLISH_WINDOW
# Items marked published per transaction while the window is full. Marking stores our own entry of each
# (0.2 ms an item alone, several times that under load); the loop answers no server reply meanwhile, so
# groups are kept short enough for the IQs in flight to keep the server busy until it is done.
MARK_BATCH = 16


class Outcome(Enum):
    SENT = "sent"  # the server has it: mark published
    FAILED = "failed"  # marked failed: later versions of the item may go
    RETRY = "retry"  # try again later: later versions of the item must wait


Key = tuple[str, str]  # (node, item id): what must stay in order


class OutboxDrain:
    def __init__(self, config: Config, store: Outbox, xmpp: BridgeComponent,
                 access_model: Callable[[str], Awaitable[str]] | None = None) -> None:
        self.config, self.store, self.xmpp = config, store, xmpp
        # The policy's model -> the one to create a node with (xmpp.approvals: authorize for whitelist).
        self.access_model = access_model
        self._retry_after: dict[int, float] = {}
        self._window = asyncio.Semaphore(PUBLISH_WINDOW)
        self._chains: dict[Key, asyncio.Task[None]] = {}  # under way, by key: later items of it wait
        self._taken: set[int] = set()  # outbox ids in a chain, or sent and not marked yet
        self._sent: list[OutboxItem] = []  # the server has them; not marked published yet
        self._holds = 0  # held(): nothing new is sent while above 0

    async def run(self) -> None:
        try:
            while True:
                try:
                    self._step()
                except Exception:  # noqa: BLE001 - e.g. the store locked by another process for too long
                    # Whatever it was, the items are still pending: log it and go on, never stop draining.
                    log.exception("reading or marking the outbox failed; trying again in %.0f s", RETRY_DELAY)
                    await asyncio.sleep(RETRY_DELAY)
                    continue
                await asyncio.sleep(OUTBOX_POLL)
        finally:
            for task in self._chains.values():
                task.cancel()
            await asyncio.gather(*self._chains.values(), return_exceptions=True)
            try:
                self._mark_sent()  # spares re-sending them on restart; harmless if it cannot
            except Exception:  # noqa: BLE001 - at shutdown the store may be closed already
                log.debug("could not mark %d sent items at shutdown", len(self._sent))

    @contextmanager
    def held(self) -> Iterator[None]:
        """Send nothing new inside (what is already sent is answered as usual): a reload holds the drain
        while it narrows who reads our nodes, so that no item goes out to a member being removed."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    def _step(self) -> None:
        # Mark in groups while the window is full; at once when it is not (light load, or the end of a
        # burst), so that published_at stays close to the publish.
        if self._sent and (len(self._sent) >= MARK_BATCH or len(self._chains) < PUBLISH_WINDOW):
            self._mark_sent()
        if len(self._chains) < REFILL_BELOW:
            for key, chain in self._next_chains().items():
                self._taken.update(item.id for item in chain)
                self._chains[key] = asyncio.create_task(self._run_chain(key, chain))

    def _next_chains(self) -> dict[Key, list[OutboxItem]]:
        """Pending items that may go now, grouped per PubSub item in outbox order."""
        if not self.xmpp.online.is_set() or self._holds:
            return {}
        now = time.monotonic()
        chains: dict[Key, list[OutboxItem]] = defaultdict(list)
        held: set[Key] = set(self._chains)  # a chain of the key under way, or a retry to wait out
        # Without the items under way: reading them again (payload, incident) only to skip them cost
        # the loop tens of milliseconds per look under load.
        for item in self.store.pending(limit=BATCH, exclude=self._taken):
            key = (item.node, item.item_id)
            if key in held:
                continue
            if self._retry_after.get(item.id, 0) > now:
                held.add(key)
                continue
            chains[key].append(item)
        return chains

    async def _run_chain(self, key: Key, chain: list[OutboxItem]) -> None:
        sent: set[int] = set()
        try:
            for item in chain:
                try:
                    async with self._window:
                        outcome = await self._send(item)
                except Exception:  # noqa: BLE001 - e.g. the store locked while marking it failed
                    log.exception("outbox item %d failed unexpectedly; trying again in %.0f s", item.id,
                                  RETRY_DELAY)
                    self._retry_after[item.id] = time.monotonic() + RETRY_DELAY
                    return
                if outcome is Outcome.SENT:
                    sent.add(item.id)
                    self._sent.append(item)
                elif outcome is Outcome.RETRY:
                    return  # the rest of this chain must not overtake it
        finally:
            del self._chains[key]
            self._taken.difference_update(item.id for item in chain if item.id not in sent)

    def _mark_sent(self) -> None:
        if not self._sent:
            return
        sent, service = self._sent, self.config.pubsub_service
        self.store.mark_published(*(item.id for item in sent), service=service)  # if it raises: kept
        self._sent = []
        self._taken.difference_update(item.id for item in sent)
        for item in sent:
            what = "retracted" if item.action == RETRACT else "published"
            log.info("%s %s on %s on %s", what, item.item_id, item.node, service)

    async def _send(self, item: OutboxItem) -> Outcome:
        if not self.xmpp.online.is_set() or self._holds:
            return Outcome.RETRY  # not an error: tried again once the connection is back (or the hold ends)
        outcome = await self._attempt(item)
        if outcome is not Outcome.RETRY:
            self._retry_after.pop(item.id, None)
        return outcome

    async def _attempt(self, item: OutboxItem) -> Outcome:
        try:
            await (self._retract(item) if item.action == RETRACT else self._publish(item))
        except InputRejected as exc:
            # Not publishable at all (restriction wider than the node, payload not XML): the outbox is
            # a file on disk, so it is checked again here, not only when filled.
            self.store.mark_failed(item.id, f"{exc.reason}: {exc}")
            log.error("outbox item %d refused: %s: %s", item.id, exc.reason, exc)
            return Outcome.FAILED
        except PublishFailed as exc:
            if not exc.transient and self.xmpp.online.is_set():
                # The server answered with an error: retrying the same bytes will not help.
                self.store.mark_failed(item.id, str(exc))
                log.error("publishing outbox item %d failed: %s", item.id, exc)
                return Outcome.FAILED
            if self.xmpp.online.is_set():
                self._retry_after[item.id] = time.monotonic() + RETRY_DELAY
            return Outcome.RETRY
        return Outcome.SENT

    async def _publish(self, item: OutboxItem) -> None:
        if item.incident is not None:
            check_publishable(item.node, item.incident)
        audience = self.config.node_audience(item.node)
        if audience.empty:  # queued before a reload narrowed the audience: kept as failed, with why
            raise InputRejected(f"no member may read {item.node} (audiences)", reason=AUDIENCE_EMPTY)
        # The payload is written into the stream verbatim (publish_bytes); re-deriving its wire form
        # guarantees one well-formed element, so no outbox content can inject stanzas.
        payload = wire_bytes(parse_untrusted(item.payload, max_bytes=self.config.max_document_bytes))
        service = self.config.pubsub_service
        category = parse_node_name(self.config.node_prefix, item.node)
        access = node_access(category[0] if category else "private").access_model
        if self.access_model is not None:
            access = await self.access_model(access)
        await self.xmpp.ensure_node(service, item.node, access_model=access,
                                    payload_type=payload_namespace(payload),
                                    members=audience.bridges)
        await self.xmpp.publish_bytes(service, item.node, item.item_id, payload)

    async def _retract(self, item: OutboxItem) -> None:
        service = self.config.pubsub_service
        try:
            await self.xmpp.retract(service, item.node, item.item_id)
        except IqTimeout:
            raise PublishFailed(f"{service} did not answer the retraction", transient=True) from None
        except IqError as exc:
            if exc.condition != "item-not-found":  # already gone: what we wanted
                raise PublishFailed(f"{service} refused to retract {item.item_id} from {item.node}: "
                                    f"{exc.condition} {exc.text}".strip()) from None
