"""The doctor's own short-lived component connection, used when the bridge is not running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from xml.etree import ElementTree as ET

from xmppbridge.config.settings import Config
from xmppbridge.xmpp.component import BridgeComponent
from xmppbridge.xmpp.servers import ServerAddress

CONFLICT = "conflict"  # RFC 6120 §4.9.3.3: the server holds a connection for this JID already


class _Ignore:
    """The doctor's sink: items that arrive for the bridge's subscriptions while it is away are left to
    the bridge's catch-up; the doctor stores nothing."""

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None:
        pass

    def on_retract(self, service: str, node: str, item_id: str) -> None:
        pass

    @contextmanager
    def batch(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def component_session(config: Config, timeout: float, server: ServerAddress | None = None
                            ) -> AsyncIterator[tuple[str, str, BridgeComponent]]:
    """Connect once as the config's component, to ``server`` (default: the config's first); yields how it
    went (``online``, a stream error condition, ``refused``, ``closed`` or ``timeout``), its text, and the
    component; disconnects after."""
    xmpp = BridgeComponent(config.jid, config.secret, [server or config.servers[0]], _Ignore())
    xmpp.stopping = True  # one attempt: no reconnecting after a refusal or a close
    outcome: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()

    def settle(kind: str, detail: Any = "") -> None:
        if not outcome.done():
            outcome.set_result((kind, str(detail or "")))

    xmpp.add_event_handler("session_start", lambda _: settle("online"))
    xmpp.add_event_handler("stream_error", lambda error: settle(error["condition"], error["text"]))
    xmpp.add_event_handler("connection_failed", lambda error: settle("refused", error))
    xmpp.add_event_handler("disconnected", lambda reason: settle("closed", reason))
    xmpp.connect()
    try:
        try:
            kind, detail = await asyncio.wait_for(outcome, timeout)
        except TimeoutError:
            kind, detail = "timeout", ""
        yield kind, detail, xmpp
    finally:
        if xmpp.online.is_set():
            await xmpp.disconnect(wait=min(timeout, 2.0))
        else:
            xmpp.cancel_connection_attempt()
            xmpp.abort()
