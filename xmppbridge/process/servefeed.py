"""``xmppbridge serve-feed``: the feed alone, from the shared store, with no XMPP connection.

Every read the feed of ``xmppbridge run`` answers is answered here the same way (the same
``make_app`` over the same store), and AtomPub writes go through the same ``Publisher`` into the
store's outbox; the running bridge's drain polls the outbox, publishes them and marks them published,
and the request, which polls the outbox item too (``Publisher.wait_async``), answers 201 then (or 202
when the bridge is down: the item stays queued). Users, rights, throttle, TLS and the operator listener
come from the same config sections; SIGHUP applies changed rights and audiences as ``run`` does.

Nothing a response depends on is kept in the process: paging cursors are change sequence numbers,
archive numbers follow from them and ``feed.archive_size``, entry ids are the store's, links start at
``feed.base_url``, ETags hash the bytes, Last-Modified is the newest change's time (the epoch for a
collection never changed). So any number of these processes, on one machine or several behind a load
balancer, answer a URL with the same bytes and validators. What stays per process: the failed-login
throttle and the cache of verified passwords (see README "Feed processes").
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from xmppbridge.config.reload import reload_signing, reread
from xmppbridge.config.settings import Config
from xmppbridge.feed.app import store_health
from xmppbridge.paths.publish import Publisher
from xmppbridge.policy.may import LivePolicy
from xmppbridge.process.listeners import Listeners
from xmppbridge.process.metrics import BridgeMetrics
from xmppbridge.store import Store

log = logging.getLogger(__name__)

BUSY_HINT = ("several serve-feed processes on one machine need --listen and --operator-listen each, or "
             "--reuse-port to share feed.listen (and --operator-listen each)")


class FeedProcess:
    """One feed process. ``run()`` returns when ``stop()`` is called.

    ``overrides``: the command line's config settings (``--listen`` ...), applied again on reload.
    ``reuse_port``: share ``feed.listen`` with other processes on this machine (SO_REUSEPORT)."""

    def __init__(self, config: Config, *, overrides: Mapping[str, object] | None = None,
                 reuse_port: bool = False) -> None:
        self.config, self.overrides = config, dict(overrides or {})
        self.store = Store(config.store_target)
        self.policy = LivePolicy(config.policy)
        self.publisher = Publisher.for_config(self.store, config)
        # No component here: the connection state in /metrics is the one the bridge records in the store.
        self.metrics = BridgeMetrics(self.store)
        self.listeners = Listeners(config, self.store, policy=self.policy, health=self._health,
                                   metrics=self.metrics, publisher=self.publisher, reuse_port=reuse_port,
                                   busy_hint=BUSY_HINT)
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        try:
            await self.listeners.start()
            log.info("serving the feed of %s from %s, without XMPP", self.config.jid, self.store.path)
            await self._stopping.wait()
        finally:
            await self.listeners.stop()
            self.store.close()

    def _health(self) -> dict[str, object]:
        """The detailed ``/healthz``: a feed process, and the bridge's connection as the bridge recorded it
        in the store. The status does not follow the bridge: reads work while it is down, and a load
        balancer must not take every feed process out because of it (writes then answer 202, queued)."""
        connection, since = self.store.state().get("connection", ("never started", None))
        return {**store_health(self.store), "role": "feed", "ready": True, "pid": os.getpid(),
                "outbox": self.store.outbox_depth(), "bridge_connection": connection,
                "bridge_connection_since": None if since is None else since.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def reload(self) -> None:
        """SIGHUP: the rights of feed users and anonymous readers, the audiences (the publisher's refusal
        of a category nobody reads) and our signing key from the file again; the rest needs a restart
        (``config.reload``)."""
        config = reread(self.config, self.overrides)
        if config is None:
            return
        # AtomPub writes here are signed here too: with the reloaded key, as the bridge's are.
        config, self.publisher.identity = reload_signing(self.config, config, self.publisher.identity)
        self.config = config
        self.policy.current = config.policy
        self.publisher.audiences = config.audiences
        log.info("reloaded %s: rights and audiences applied", config.file)

    def stop(self) -> None:
        self._stopping.set()
