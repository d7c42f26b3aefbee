"""Wire the core to its shells for ``xmppbridge run``: XMPP component, mirror, outbox drain, HTTP feed."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from xmppbridge.config import Config
from xmppbridge.feed.app import FeedSettings, make_app
from xmppbridge.signing.verify import TrustStore
from xmppbridge.store import Store
from xmppbridge.xmpp.component import BridgeComponent
from xmppbridge.xmpp.mirror import Mirror
from xmppbridge.xmpp.outbox import OutboxDrain

log = logging.getLogger(__name__)


class Bridge:
    """One running bridge. ``run()`` returns when ``stop()`` is called."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.store_path)
        self.mirror = Mirror(config, self.store, TrustStore.from_paths(list(config.trust_anchors)))
        self.xmpp = BridgeComponent(config.jid, config.secret, config.server_host, config.server_port,
                                    self.mirror)
        self.outbox = OutboxDrain(config, self.store, self.xmpp)
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once connected, subscribed and serving HTTP

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
        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.wait_for(self.xmpp.online.wait(), 30)
            log.info("connected to %s:%s as %s", self.config.server_host, self.config.server_port,
                     self.config.jid)
            await self.mirror.subscribe_all(self.xmpp)
            self.ready.set()
            tasks = [asyncio.create_task(self.outbox.run()),
                     asyncio.create_task(self.mirror.rediscover(self.xmpp))]
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
