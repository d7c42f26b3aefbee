"""Wire the core to its shells for ``xmppbridge run``: XMPP component, mirror, outbox drain, HTTP feed,
and the operator listener (``metrics.listen``: /metrics and the detailed /healthz, loopback only).
The XMPP side runs only while this instance holds the store's lease (``xmppbridge.process.leadership``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from xmppbridge.chat.service import ChatService
from xmppbridge.config.reload import reload_signing, reread
from xmppbridge.config.settings import Config
from xmppbridge.doctor.relay import answer_doctor
from xmppbridge.feed.app import store_health
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.ops.status import peer_report
from xmppbridge.paths.custody import member_names
from xmppbridge.paths.hub import Hub, OwnEcho
from xmppbridge.paths.publish import Publisher
from xmppbridge.paths.spool import Spool
from xmppbridge.policy.churn import churn
from xmppbridge.policy.may import LivePolicy
from xmppbridge.process.leadership import Leadership, holder_for
from xmppbridge.process.listeners import Listeners
from xmppbridge.process.metrics import BridgeMetrics
from xmppbridge.store import Store
from xmppbridge.xmpp.adhoc import attach_adhoc, operator_actions
from xmppbridge.xmpp.approvals import ApprovalDesk
from xmppbridge.xmpp.chat import attach_chat
from xmppbridge.xmpp.component import BridgeComponent
from xmppbridge.xmpp.mirror import Mirror
from xmppbridge.xmpp.outbox import OutboxDrain
from xmppbridge.xmpp.presence import attach_presence
from xmppbridge.xmpp.reconcile import Reconciler
from xmppbridge.xmpp.rooms import attach_rooms

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 30.0  # seconds between liveness probes of the server link
KEEPALIVE_TIMEOUT = 10.0


class Bridge:
    """One running bridge. ``run()`` returns when ``stop()`` is called."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.store_target)
        self.store.forget_peers_except(sorted({s.service for s in config.subscriptions}))
        # AtomPub writes go through the same Publisher as `xmppbridge publish`, into this outbox.
        self.publisher = Publisher.for_config(self.store, config)
        identity = self.publisher.identity
        # A coordinator relays what its relay: rules select (paths/hub.py); a spoke passes over its own items
        # coming back from the hub.
        self.hub = Hub(config, self.store, identity) if config.relay else None
        self.own_echo = OwnEcho(identity)
        self.mirror = Mirror(config, self.store, config.trust,  # trust: loaded and checked by load_config
                             relay=self.hub.relay if self.hub else None,
                             retract_relayed=self.hub.retract if self.hub else None,
                             own_echo=self.own_echo, member_of=member_names(config.registry))
        self.metrics = BridgeMetrics(self.store, connected=lambda: self.xmpp.online.is_set())
        self.xmpp = BridgeComponent(config.jid, config.secret, config.servers,
                                    self.metrics.timed_sink(self.mirror))
        # People and operators: chat commands and notices, rooms, ad-hoc commands for admins.
        ops = config.operators
        self.chat_state = self.store.chat
        self.rooms = attach_rooms(self.xmpp, ops.rooms) if ops.rooms else None
        self.policy = LivePolicy(config.policy)  # asked by the feed, chat and ad-hoc; swapped on reload
        self.chat = attach_chat(self.xmpp, ChatService(ops, self.policy, self.store, self.chat_state,
                                                       FeedUrls(config.feed_base_url)), self.rooms)
        attach_adhoc(self.xmpp, self.policy, operator_actions(config, self.store, self.chat_state))
        self.presence = attach_presence(self.xmpp)  # chat clients show the bridge online
        self.approvals = ApprovalDesk(config, self.store, self.xmpp, self.chat.send)
        self.outbox = OutboxDrain(config, self.store, self.xmpp, self.approvals.access_model)
        self.reconciler = Reconciler(config, self.xmpp, self.metrics.count_affiliation_change,
                                     self.store.approved_jids)
        # The feed and the operator listener, as `xmppbridge serve-feed` serves them (listeners.py).
        self.listeners = Listeners(config, self.store, policy=self.policy, health=self._health,
                                   metrics=self.metrics, publisher=self.publisher)
        self._reloads: set[asyncio.Task[None]] = set()  # referenced until done (asyncio keeps weak ones)
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once active, connected, subscribed and serving HTTP
        # Several `run`s may share the store: one acts, the others serve the feed and stand by.
        self.leadership = Leadership(holder_for(config), self.store, config.instance_name)
        self._fenced = False

    async def run(self) -> None:
        """Serve the feed and the operator listener from the start; act on XMPP only while this instance
        holds the store's lease (``xmppbridge.process.leadership``), standing by otherwise."""
        config = self.config
        self.metrics.watch_lease(config.instance_name, lambda: self.leadership.active,
                                 lambda: self.leadership.lease.takeovers)
        await self.listeners.start()
        try:
            await self.leadership.run(self._act, self._fence, self._stopping, sever=self.xmpp.sever)
        finally:
            for task in self._reloads:
                task.cancel()
            await asyncio.gather(*self._reloads, return_exceptions=True)
            await self.listeners.stop()
            self.store.close()

    async def _act(self) -> None:
        """The active instance's work: the XMPP side, until cancelled."""
        config = self.config
        self._fenced = False
        spool = None
        if config.spool_dir:
            spool = Spool(config.spool_dir, self.publisher, interval=config.spool_interval)
        self.xmpp.stopping = False
        self.xmpp.connect()
        tasks = [asyncio.create_task(coro) for coro in (
            self._sessions(),
            self.outbox.run(),
            self.reconciler.run(),
            self.mirror.rediscover(self.xmpp),
            self.mirror.recheck(self.xmpp),
            self.mirror.watch_approvals(self.xmpp),
            self.xmpp.keepalive(self.config.pubsub_service, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT),
            self.chat.watch(),
            self.approvals.run(),
            answer_doctor(self.config, self.store, self.xmpp),  # `xmppbridge doctor` while we run
            *([self.rooms.run()] if self.rooms else []),
            *([spool.run()] if spool else []),
        )]
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled: stopped, or fenced
        finally:
            self.ready.clear()
            self.xmpp.stopping = True
            self.xmpp.deliver_held()  # while the store is still open
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self._fenced:  # fenced: another instance may be taking over; leave the record to it
                if self.xmpp.online.is_set():
                    self.presence.going_offline()
                await self.xmpp.disconnect()
                self.store.set_state("connection", "stopped")

    def _fence(self) -> None:
        """The lease is lost: drop the component connection now, before anyone else may take over."""
        self._fenced = True
        self.ready.clear()
        self.xmpp.stopping = True
        self.xmpp.cancel_connection_attempt()
        self.xmpp.abort()

    def _health(self) -> dict[str, object]:
        """The detailed ``/healthz`` (operator listener, operator users). An unreachable peer leaves the
        answer 200: this bridge works and its supervisor must not restart it for another domain's trouble;
        ``status`` says "degraded"."""
        peers = peer_report(self.config, self.store)
        return {**store_health(self.store),
                "status": "degraded" if peers["peers_degraded"] else "ok", "ready": self.ready.is_set(),
                "connected": self.xmpp.online.is_set(), "outbox": self.store.outbox_depth(),
                **self.leadership.report(), **peers}

    async def _sessions(self) -> None:
        """Every time the component (re)connects: resubscribe and catch up, and bring our nodes'
        affiliations to their audiences (changed while we were away?); then wait for the next gap."""
        while True:
            await self.xmpp.online.wait()
            log.info("connected to %s as %s", self.xmpp.server, self.config.jid)
            # Which server (which node of a cluster): `status` shows it.
            self.store.set_state("server", str(self.xmpp.server))
            self.store.set_state("connection", "online")
            await self.approvals.on_session()
            await asyncio.gather(self.mirror.sync_all(self.xmpp), self.reconciler.round("connected"))
            self.ready.set()
            await self.xmpp.offline.wait()
            self.store.set_state("connection", "offline")

    def reload(self) -> None:
        """SIGHUP: read the config file again, apply its audiences, reconcile now (``config.reload``)."""
        task = asyncio.get_running_loop().create_task(self._reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        config = reread(self.config)
        if config is None:
            return
        config, identity = reload_signing(self.config, config, self.publisher.identity)
        if identity is not self.publisher.identity:
            # What is queued keeps the bytes it was signed with; what is submitted from now on is signed
            # with the new key, and what a hub still relays with the old one is still recognised as ours.
            self.publisher.identity = identity
            self.own_echo.also(identity)
        file = config.file
        changed = churn(self.config.registry, config.registry, self.config.sources.services,
                        config.sources.services)
        for line in changed.lines():
            log.info("audit: %s (reload)", line)
        # Publishing waits for the round: nothing goes out to a member it is about to remove.
        with self.outbox.held():
            # Everything that reads the audiences reads them from these, at each use.
            self.config = self.outbox.config = self.reconciler.config = self.approvals.config = config
            if self.hub is not None:
                self.hub.config = config
                self.hub.relayer = replace(self.hub.relayer, identity=identity, trust=config.trust,
                                           member_of=member_names(config.registry))
            self.publisher.audiences = config.audiences
            self.policy.current = config.policy
            log.info("reloaded %s: audiences and member registry applied", file)
            if self.xmpp.online.is_set():  # else the round after the next connect applies them
                # Held requests of bridges the new audiences name are let in (their forms come again).
                await self.approvals.on_session()
                await self.reconciler.round("reload")
        # Trust and subscriptions after the round: a leaver is cut off at our nodes first, and catching
        # up with a newcomer's nodes does not hold the outbox.
        if changed.dropped:
            self.store.forget_peers_except(sorted(config.sources.services))
        await self.mirror.follow(config, self.xmpp, changed.dropped)

    def stop(self) -> None:
        self._stopping.set()
