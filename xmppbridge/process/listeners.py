"""The HTTP side of a process, the same for ``xmppbridge run`` and ``xmppbridge serve-feed``: the feed
application on ``feed.listen`` (TLS when ``feed.tls`` is set) and the operator listener on
``metrics.listen`` (/metrics and the detailed /healthz, loopback only).

What differs between the two commands is handed in: the store, the live policy, the publisher AtomPub
writes go through (None: a read-only feed, writes answer 405), and the detailed health.
"""

from __future__ import annotations

import errno
import logging
import ssl
from collections.abc import Callable, Mapping

from aiohttp import web

from xmppbridge.config.settings import Config
from xmppbridge.errors import ConfigError
from xmppbridge.feed.app import make_app
from xmppbridge.feed.throttle import Throttle
from xmppbridge.feed.tls import server_context
from xmppbridge.paths.publish import Publisher
from xmppbridge.policy.may import Decides
from xmppbridge.process.metrics import BridgeMetrics, operator_app
from xmppbridge.store import Store

log = logging.getLogger(__name__)

Health = Callable[[], Mapping[str, object]]


class Listeners:
    """``start()`` listens, ``stop()`` closes; both listeners share one failed-login throttle, whose counts
    the metrics read."""

    def __init__(self, config: Config, store: Store, *, policy: Decides, health: Health,
                 metrics: BridgeMetrics, publisher: Publisher | None, reuse_port: bool = False,
                 busy_hint: str = "") -> None:
        self.config, self.store, self.policy, self.health = config, store, policy, health
        self.metrics, self.publisher = metrics, publisher
        # SO_REUSEPORT on the feed listener: several processes on one machine share feed.listen and the
        # kernel spreads the connections between them. Never on the operator listener, where a scrape or
        # health check must reach the process it asks about.
        self.reuse_port = reuse_port
        self.busy_hint = busy_hint  # added to the error when an address is taken
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        config = self.config
        throttle = Throttle(config.feed.throttle)
        self.metrics.watch_logins(throttle.stats)
        metrics = self.metrics if config.operators.metrics else None
        scrape = None if metrics is None else metrics.scrape
        app = make_app(self.store, config.feed, publisher=self.publisher, policy=self.policy,
                       health=self.health, throttle=throttle, metrics=scrape)
        tls = server_context(config.feed.tls) if config.feed.tls else None
        try:
            await self._listen(app, "feed.listen", config.feed_listen_host, config.feed_listen_port,
                               ssl_context=tls, reuse_port=self.reuse_port)
            log.info("feed at %s (listening on %s:%d)", config.feed_base_url, config.feed_listen_host,
                     config.feed_listen_port)
            if config.operators.metrics_listen is not None:
                host, port = config.operators.metrics_listen
                await self._listen(operator_app(metrics, self.health), "metrics.listen", host, port)
                log.info("operator listener (/metrics, /healthz) at http://%s:%d/", host, port)
        except BaseException:
            await self.stop()
            raise

    async def _listen(self, app: web.Application, key: str, host: str, port: int, *,
                      ssl_context: ssl.SSLContext | None = None, reuse_port: bool = False) -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        self._runners.append(runner)
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port).start()
        except OSError as exc:
            busy = f"; {self.busy_hint}" if exc.errno == errno.EADDRINUSE and self.busy_hint else ""
            raise ConfigError(str(self.config.file), key,
                              f"cannot listen on {host}:{port}: {exc.strerror}{busy}") from None

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners = []
