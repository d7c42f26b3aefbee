"""Keep subscriptions to remote nodes and hand what arrives to the receive path.

Discovery (RFC 8600 §5: disco#items, then ``pubsub#type`` per node) runs at start and every
``discovery_interval``, so nodes a peer creates later are picked up.
"""

from __future__ import annotations

import asyncio
import logging
from xml.etree import ElementTree as ET

from xmppbridge.config import Config
from xmppbridge.receive import receive_item
from xmppbridge.signing.verify import TrustStore
from xmppbridge.signing.wireform import wire_bytes
from xmppbridge.store import Store
from xmppbridge.xmpp.component import BridgeComponent

log = logging.getLogger(__name__)


class Mirror:
    """The component's ItemSink: verifies and stores what remote nodes send."""

    def __init__(self, config: Config, store: Store, trust: TrustStore) -> None:
        self.config, self.store, self.trust = config, store, trust
        self._subscribed: set[tuple[str, str]] = set()

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None:
        receive_item(self.store, self.trust, service=service, node=node, item_id=item_id,
                     payload=None if payload is None else wire_bytes(payload),
                     max_bytes=self.config.max_document_bytes, schema_mode=self.config.schema_mode)

    def on_retract(self, service: str, node: str, item_id: str) -> None:
        if self.store.mark_deleted(service, node, item_id):
            log.info("retracted item %s on %s/%s", item_id, service, node)

    async def subscribe_all(self, xmpp: BridgeComponent) -> None:
        for subscription in self.config.subscriptions:
            try:
                nodes = subscription.nodes or await xmpp.discover_iodef_nodes(subscription.service)
            except Exception as exc:  # noqa: BLE001 - one unreachable peer must not stop the others
                log.warning("cannot discover nodes of %s: %s", subscription.service, exc)
                continue
            for node in nodes:
                await self._subscribe(xmpp, subscription.service, node)

    async def _subscribe(self, xmpp: BridgeComponent, service: str, node: str) -> None:
        if (service, node) in self._subscribed:
            return
        try:
            await xmpp.subscribe(service, node)
            # Subscribe first, then fetch: an item published in between arrives twice, which the
            # store absorbs (same item id, same bytes -> "unchanged"); the other order could miss it.
            count = await xmpp.fetch_items(service, node)
        except Exception as exc:  # noqa: BLE001 - logged; retried at the next discovery round
            log.warning("cannot subscribe to %s on %s: %s", node, service, exc)
            return
        self._subscribed.add((service, node))
        log.info("subscribed to %s on %s (%d items already there)", node, service, count)

    async def rediscover(self, xmpp: BridgeComponent) -> None:
        """Pick up nodes a peer created after we started, and retry failed subscriptions."""
        while True:
            await asyncio.sleep(self.config.discovery_interval)
            await self.subscribe_all(xmpp)
