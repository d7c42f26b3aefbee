"""Rooms shell: join the configured MUC rooms (XEP-0045) and post summaries there.

Which summaries a room gets is decided by ``ChatService.notices`` (the room's filter, public unless its
config allows more); this module only keeps the bridge in the rooms and delivers. Posts made while a
room is not joined wait (a bounded number) and go out once it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from slixmpp import JID

from xmppbridge.chat.settings import RoomSettings
from xmppbridge.xmpp.component import BridgeComponent

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 20.0
REJOIN_INTERVAL = 30.0  # seconds between attempts for rooms we are not in
MAX_WAITING = 50  # posts kept per room while it is not joined
ROOM_CREATED = 201  # XEP-0045 status: we created the room; it stays locked until configured


class RoomShell:
    def __init__(self, component: BridgeComponent, rooms: tuple[RoomSettings, ...]) -> None:
        self.component, self.rooms = component, {room.room: room for room in rooms}
        component.register_plugin("xep_0045")
        self._joined: set[str] = set()
        self._waiting: dict[str, deque[str]] = {room: deque(maxlen=MAX_WAITING) for room in self.rooms}
        component.add_event_handler("disconnected", lambda _: self._joined.clear())
        for room in self.rooms:
            # Kicked, or the room went away: join again at the next round.
            component.add_event_handler(f"muc::{room}::got_offline", self._on_offline)

    @property
    def muc(self) -> Any:
        return self.component.plugin["xep_0045"]

    def post(self, room: str, body: str) -> None:
        if room not in self._joined:
            self._waiting[room].append(body)
            return
        self.component.send_message(mto=room, mbody=body, mtype="groupchat",
                                    mfrom=self.component.boundjid.bare)

    async def run(self) -> None:
        """Keep every configured room joined while connected."""
        while True:
            await self.component.online.wait()
            for room in self.rooms.values():
                if room.room not in self._joined and self.component.online.is_set():
                    await self.join(room)
            await asyncio.sleep(REJOIN_INTERVAL)

    async def join(self, room: RoomSettings) -> bool:
        me = self.component.boundjid.bare
        try:
            presence, *_ = await self.muc.join_muc_wait(
                JID(room.room), room.nick, password=room.password, maxstanzas=0,
                presence_options={"pfrom": me}, timeout=JOIN_TIMEOUT)
            if ROOM_CREATED in presence["muc"]["status_codes"]:
                # An empty submitted form accepts the default configuration (an "instant room").
                form = self.component.plugin["xep_0004"].make_form(ftype="submit")
                await self.muc.set_room_config(room.room, form, ifrom=me, timeout=JOIN_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - retried every REJOIN_INTERVAL
            log.warning("cannot join room %s as %s: %s", room.room, room.nick, exc or type(exc).__name__)
            return False
        self._joined.add(room.room)
        log.info("joined room %s as %s", room.room, room.nick)
        waiting = self._waiting[room.room]
        while waiting:
            self.post(room.room, waiting.popleft())
        return True

    def _on_offline(self, presence: Any) -> None:
        room = presence["from"].bare
        if presence["from"].resource == self.rooms[room].nick:
            self._joined.discard(room)
            log.warning("left room %s (%s); rejoining", room, presence["muc"]["status_codes"] or "no reason")


def attach_rooms(component: BridgeComponent, rooms: tuple[RoomSettings, ...]) -> RoomShell:
    return RoomShell(component, rooms)
