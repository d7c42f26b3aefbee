"""Drain the store's outbox into PubSub: the publish path's XMPP end.

Items are committed to the outbox before anyone is told "accepted" (CLI, AtomPub, watched folder);
this loop publishes them with their deterministic item ids, so publishing one twice only overwrites it.
Retractions (AtomPub DELETE) go the same way; retracting an item twice, or one the node no longer has,
is done, not failed.

Up to ``PUBLISH_WINDOW`` IQs are in flight at once: one at a time, each item waits a full server round
trip (benchmark 2 in BENCHMARKS.md). Order still matters per PubSub item: a later version of an item,
or its retraction, must reach the server after the earlier one, so items sharing (node, item id) go one
after the other, and none overtakes an earlier one that is waiting to be retried. Items that went out
are marked published in one transaction per batch; if the process dies before that, they go out again
on restart, which only overwrites them with the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from enum import Enum

from slixmpp.exceptions import IqError, IqTimeout

from xmppbridge.config import Config
from xmppbridge.errors import InputRejected, PublishFailed
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.policy import check_publishable, node_access, parse_node_name
from xmppbridge.publish import payload_namespace
from xmppbridge.signing.wireform import wire_bytes
from xmppbridge.store import OutboxItem, Store
from xmppbridge.store.outbox import RETRACT
from xmppbridge.xmpp.component import BridgeComponent

log = logging.getLogger(__name__)

# Seconds between outbox scans when idle. Other processes (the CLI) write there too; an empty scan is one
# index probe, and a short interval keeps the publish latency well below the 200 ms target at 50/s.
OUTBOX_POLL = 0.02
RETRY_DELAY = 5.0
PUBLISH_WINDOW = 16  # IQs in flight; as the catch-up fetches, and the raw client in the benchmark
BATCH = 256  # items read from the outbox per round; large enough that the window rarely runs dry


class Outcome(Enum):
    SENT = "sent"  # the server has it: mark published
    FAILED = "failed"  # marked failed: later versions of the item may go
    RETRY = "retry"  # try again later: later versions of the item must wait


Key = tuple[str, str]  # (node, item id): what must stay in order


class OutboxDrain:
    def __init__(self, config: Config, store: Store, xmpp: BridgeComponent) -> None:
        self.config, self.store, self.xmpp = config, store, xmpp
        self._retry_after: dict[int, float] = {}

    async def run(self) -> None:
        while True:
            try:
                chains = self._next_round()
                if chains:
                    await self._drain(chains)  # after a busy round, go straight on to the next one
                    continue
            except Exception:  # noqa: BLE001 - e.g. the store locked by another process for too long
                # Whatever it was, the items are still pending: log it and go on, never stop draining.
                log.exception("outbox round failed; trying again in %.0f s", RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)
                continue
            # Idle, offline, or only items waiting out a retry delay: poll, since other processes (the
            # CLI) write to the outbox.
            await asyncio.sleep(OUTBOX_POLL)

    def _next_round(self) -> list[list[OutboxItem]]:
        """Pending items that may go now, grouped per PubSub item in outbox order."""
        if not self.xmpp.online.is_set():
            return []
        now = time.monotonic()
        chains: dict[Key, list[OutboxItem]] = defaultdict(list)
        held: set[Key] = set()  # an earlier item of this key waits out its retry delay
        for item in self.store.pending(limit=BATCH):
            key = (item.node, item.item_id)
            if key in held:
                continue
            if self._retry_after.get(item.id, 0) > now:
                held.add(key)
                continue
            chains[key].append(item)
        return list(chains.values())

    async def _drain(self, chains: list[list[OutboxItem]]) -> None:
        window = asyncio.Semaphore(PUBLISH_WINDOW)
        sent: list[OutboxItem] = []

        async def one_after_another(chain: list[OutboxItem]) -> None:
            for item in chain:
                async with window:
                    outcome = await self._send(item)
                if outcome is Outcome.SENT:
                    sent.append(item)
                elif outcome is Outcome.RETRY:
                    return  # the rest of this chain must not overtake it

        # Every chain runs to its end even if another fails: none may still be sending when the next
        # round starts with the same items (two sends of one item could arrive out of order).
        results = await asyncio.gather(*(one_after_another(chain) for chain in chains),
                                       return_exceptions=True)
        if sent:
            service = self.config.pubsub_service
            self.store.mark_published(*(item.id for item in sent), service=service)
            for item in sent:
                what = "retracted" if item.action == RETRACT else "published"
                log.info("%s %s on %s on %s", what, item.item_id, item.node, service)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _send(self, item: OutboxItem) -> Outcome:
        if not self.xmpp.online.is_set():
            return Outcome.RETRY  # not an error: tried again once the connection is back, at once
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
        # The payload is written into the stream verbatim (publish_bytes); re-deriving its wire form
        # guarantees one well-formed element, so no outbox content can inject stanzas.
        payload = wire_bytes(parse_untrusted(item.payload, max_bytes=self.config.max_document_bytes))
        service = self.config.pubsub_service
        category = parse_node_name(self.config.node_prefix, item.node)
        access = node_access(category[0] if category else "private").access_model
        await self.xmpp.ensure_node(service, item.node, access_model=access,
                                    payload_type=payload_namespace(payload),
                                    members=self.config.node_whitelist)
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
