"""Wire the core to its shells for ``xmppbridge run``: XMPP component, outbox drain, HTTP feed."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web

from xmppbridge.config import Config
from xmppbridge.errors import PublishFailed
from xmppbridge.feed.app import FeedSettings, make_app
from xmppbridge.policy import node_access, parse_node_name
from xmppbridge.publish import payload_namespace
from xmppbridge.receive import receive_item
from xmppbridge.signing.verify import TrustStore
from xmppbridge.signing.wireform import wire_bytes
from xmppbridge.store import Store
from xmppbridge.xmpp.component import BridgeComponent

log = logging.getLogger(__name__)

OUTBOX_POLL = 0.2  # seconds between outbox scans; the CLI writes there from another process
RETRY_DELAY = 5.0


class Bridge:
    """One running bridge. ``run()`` returns when ``stop()`` is called."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.store_path)
        self.trust = TrustStore.from_paths(list(config.trust_anchors))
        self.xmpp = BridgeComponent(config.jid, config.secret, config.server_host, config.server_port, self)
        self._stopping = asyncio.Event()
        self._subscribed: set[tuple[str, str]] = set()
        self.ready = asyncio.Event()  # set once connected, subscribed and serving HTTP

    # -- ItemSink: called by the component for every received item ---------------------------------

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None:
        receive_item(self.store, self.trust, service=service, node=node, item_id=item_id,
                     payload=None if payload is None else wire_bytes(payload),
                     max_bytes=self.config.max_document_bytes, schema_mode=self.config.schema_mode)

    def on_retract(self, service: str, node: str, item_id: str) -> None:
        if self.store.mark_deleted(service, node, item_id):
            log.info("retracted item %s on %s/%s", item_id, service, node)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        runner = web.AppRunner(make_app(self.store, FeedSettings(
            base_url=self.config.feed_base_url,
            anonymous_restrictions=self.config.feed_anonymous_restrictions,
        ), health=lambda: {"ready": self.ready.is_set(), "outbox": self.store.outbox_depth()}))
        await runner.setup()
        site = web.TCPSite(runner, self.config.feed_listen_host, self.config.feed_listen_port)
        await site.start()
        log.info("feed at %s", self.config.feed_base_url)
        self.xmpp.connect()
        tasks = []
        try:
            await asyncio.wait_for(self.xmpp.online.wait(), 30)
            log.info("connected to %s:%s as %s", self.config.server_host, self.config.server_port,
                     self.config.jid)
            await self._subscribe_all()
            self.ready.set()
            tasks = [asyncio.create_task(self._drain_outbox()),
                     asyncio.create_task(self._rediscover())]
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.xmpp.disconnect()
            await runner.cleanup()
            self.store.close()

    def stop(self) -> None:
        self._stopping.set()

    # -- receiving ---------------------------------------------------------------------------------

    async def _subscribe_all(self) -> None:
        for subscription in self.config.subscriptions:
            try:
                nodes = subscription.nodes or await self.xmpp.discover_iodef_nodes(subscription.service)
            except Exception as exc:  # noqa: BLE001 - one unreachable peer must not stop the others
                log.warning("cannot discover nodes of %s: %s", subscription.service, exc)
                continue
            for node in nodes:
                await self._subscribe(subscription.service, node)

    async def _subscribe(self, service: str, node: str) -> None:
        if (service, node) in self._subscribed:
            return
        try:
            await self.xmpp.subscribe(service, node)
            # Subscribe first, then fetch: an item published in between arrives twice, which the
            # store absorbs (same item id, same bytes -> "unchanged"); the other order could miss it.
            count = await self.xmpp.fetch_items(service, node)
        except Exception as exc:  # noqa: BLE001 - logged; retried at the next discovery round
            log.warning("cannot subscribe to %s on %s: %s", node, service, exc)
            return
        self._subscribed.add((service, node))
        log.info("subscribed to %s on %s (%d items already there)", node, service, count)

    async def _rediscover(self) -> None:
        """Pick up nodes a peer created after we started, and retry failed subscriptions."""
        while True:
            await asyncio.sleep(self.config.discovery_interval)
            await self._subscribe_all()

    # -- publishing --------------------------------------------------------------------------------

    async def _drain_outbox(self) -> None:
        retry_after: dict[int, float] = {}
        while True:
            for item in self.store.pending():
                if retry_after.get(item.id, 0) > time.monotonic():
                    continue
                try:
                    await self._publish(item)
                except PublishFailed as exc:
                    if not exc.transient and self.xmpp.online.is_set():
                        # The server answered with an error: retrying the same bytes will not help.
                        self.store.mark_failed(item.id, str(exc))
                        log.error("publishing outbox item %d failed: %s", item.id, exc)
                    else:
                        retry_after[item.id] = time.monotonic() + RETRY_DELAY
                else:
                    retry_after.pop(item.id, None)
            await asyncio.sleep(OUTBOX_POLL)

    async def _publish(self, item: Any) -> None:
        service = self.config.pubsub_service
        category = parse_node_name(self.config.node_prefix, item.node)
        access = node_access(category[0] if category else "private").access_model
        await self.xmpp.ensure_node(service, item.node, access_model=access,
                                    payload_type=payload_namespace(item.payload),
                                    members=self.config.node_whitelist)
        await self.xmpp.publish_bytes(service, item.node, item.item_id, item.payload)
        self.store.mark_published(item.id, service=service)
        log.info("published %s to %s on %s", item.item_id, item.node, service)
