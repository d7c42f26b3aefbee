"""Chat shell: people message the component JID; subscribers and rooms get incident summaries.

Thin glue around ``xmppbridge.chat.service``: it turns message stanzas into ``ChatService.handle`` calls
and ``ChatService.notices`` into messages. ``watch`` tails the store's change log, so everything that
changes an entry (mirror, outbox, quarantine release in another process) is announced.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from xmppbridge.chat.service import ChatService, Notice
from xmppbridge.xmpp.component import BridgeComponent
from xmppbridge.xmpp.rooms import RoomShell

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5  # seconds between looks at the change log


class ChatShell:
    def __init__(self, component: BridgeComponent, service: ChatService,
                 rooms: RoomShell | None = None) -> None:
        self.component, self.service, self.rooms = component, service, rooms
        # Clients ping the contacts they talk to (XEP-0199); answer instead of service-unavailable.
        component.register_plugin("xep_0199", {"keepalive": False})
        component.add_event_handler("message", self._on_message)

    def _on_message(self, msg: Any) -> None:
        # Only a person's chat/normal messages with a body: not errors (no reply loops), not groupchat
        # (rooms echo our own posts), not pubsub events (no body).
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        reply = self.service.handle(msg["from"].bare, msg["body"])
        if reply is not None:
            self.component.send_message(mto=msg["from"], mbody=reply, mtype="chat", mfrom=msg["to"])

    def send(self, notice: Notice) -> None:
        if notice.room:
            if self.rooms is not None:
                self.rooms.post(notice.to, notice.body)
            return
        self.component.send_message(mto=notice.to, mbody=notice.body, mtype="chat",
                                    mfrom=self.component.boundjid.bare)

    def announce(self) -> None:
        """Send what the change log has that was not announced yet."""
        for notice in self.service.notices(self.service.changes()):
            self.send(notice)

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Announce changes while connected. The cursor only moves when we announce, so changes made
        while offline are announced after the reconnection."""
        while True:
            await self.component.online.wait()
            try:
                self.announce()
            except Exception:  # noqa: BLE001 - a bad entry must not stop announcements for good
                log.exception("announcing changes failed")
            await asyncio.sleep(interval)


def attach_chat(component: BridgeComponent, service: ChatService,
                rooms: RoomShell | None = None) -> ChatShell:
    return ChatShell(component, service, rooms)
