"""Drain the store's outbox into PubSub: the publish path's XMPP end.

Items are committed to the outbox before anyone is told "accepted" (CLI, AtomPub, watched folder);
this loop publishes them with their deterministic item ids, so publishing one twice only overwrites it.
Retractions (AtomPub DELETE) go the same way; retracting an item twice, or one the node no longer has,
is done, not failed.
"""

from __future__ import annotations

import asyncio
import logging
import time

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

OUTBOX_POLL = 0.2  # seconds between outbox scans; other processes (the CLI) write there too
RETRY_DELAY = 5.0


class OutboxDrain:
    def __init__(self, config: Config, store: Store, xmpp: BridgeComponent) -> None:
        self.config, self.store, self.xmpp = config, store, xmpp

    async def run(self) -> None:
        retry_after: dict[int, float] = {}
        while True:
            worked = False
            for item in self.store.pending():
                if retry_after.get(item.id, 0) > time.monotonic():
                    continue
                if not self.xmpp.online.is_set():
                    break
                worked = True
                try:
                    await (self._retract(item) if item.action == RETRACT else self._publish(item))
                except InputRejected as exc:
                    # Not publishable at all (restriction wider than the node, payload not XML):
                    # the outbox is a file on disk, so it is checked again here, not only when filled.
                    self.store.mark_failed(item.id, f"{exc.reason}: {exc}")
                    log.error("outbox item %d refused: %s: %s", item.id, exc.reason, exc)
                except PublishFailed as exc:
                    if not exc.transient and self.xmpp.online.is_set():
                        # The server answered with an error: retrying the same bytes will not help.
                        self.store.mark_failed(item.id, str(exc))
                        log.error("publishing outbox item %d failed: %s", item.id, exc)
                    else:
                        retry_after[item.id] = time.monotonic() + RETRY_DELAY
                else:
                    retry_after.pop(item.id, None)
            if not worked:
                # Idle (or only items waiting out a retry delay): poll, since other processes (the
                # CLI) write to the outbox. After a busy batch, go straight on to the next one.
                await asyncio.sleep(OUTBOX_POLL)

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
        self.store.mark_published(item.id, service=service)
        log.info("published %s to %s on %s", item.item_id, item.node, service)

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
        self.store.mark_published(item.id, service=service)  # marks the entry deleted
        log.info("retracted %s from %s on %s", item.item_id, item.node, service)
