"""Presence: people's chat clients show the bridge online, as a contact they can talk to.

An XEP-0114 component has no roster on the server: its server forwards presence stanzas to it and the
component answers them itself (RFC 6121 §3 for subscriptions, §4.3 for probes). slixmpp's answer comes
from a roster kept in memory, which is empty after every restart. It answers a probe from a person who
subscribed before the restart with ``unsubscribed``, which cancels that person's subscription, and it
asks everyone who subscribes for a subscription back. Instead, the bridge answers as a service that
anyone may see online:

- ``subscribe`` gets ``subscribed`` and the bridge's presence;
- ``probe`` (the person's server asks, RFC 6121 §4.3, e.g. when the person signs in) gets the presence;
- ``unsubscribe`` gets ``unsubscribed`` and ``unavailable``.

That the bridge is online is no secret: it answers disco and chat to anyone. The JIDs that asked since
the start are remembered in memory, so that they are told when the bridge goes offline and back online
(their servers would not ask again until they sign in anew).
"""

from __future__ import annotations

import logging
from typing import Any

from slixmpp import JID

from xmppbridge.xmpp.component import BridgeComponent

log = logging.getLogger(__name__)

STATUS = "IODEF incident bridge: send 'help'"


class PresenceShell:
    def __init__(self, component: BridgeComponent) -> None:
        self.component = component
        self.seen: set[tuple[str, str]] = set()  # (person's bare JID, our bare JID they asked)
        for event, handler in (("presence_probe", component._handle_probe),
                               ("presence_subscribe", component._handle_subscribe),
                               ("presence_unsubscribe", component._handle_unsubscribe)):
            component.del_event_handler(event, handler)
        component.add_event_handler("presence_probe", self._on_probe)
        component.add_event_handler("presence_subscribe", self._on_subscribe)
        component.add_event_handler("presence_unsubscribe", self._on_unsubscribe)
        component.add_event_handler("session_start", self._on_online)

    def _ours(self, presence: Any) -> tuple[JID, JID] | None:
        """(the person, our bare JID) for presence addressed to our own JID; None for anything else, such
        as presence to a pubsub node's JID or from our own domain's services."""
        ours, them = presence["to"].bare, presence["from"].bare
        if ours != self.component.boundjid.bare or not them or them == ours:
            return None
        return JID(them), JID(ours)

    def _on_subscribe(self, presence: Any) -> None:
        if (pair := self._ours(presence)) is not None:
            them, ours = pair
            self.component.send_presence(pto=them, pfrom=ours, ptype="subscribed")
            self._available(them, ours)

    def _on_probe(self, presence: Any) -> None:
        if (pair := self._ours(presence)) is not None:
            self._available(*pair)

    def _on_unsubscribe(self, presence: Any) -> None:
        if (pair := self._ours(presence)) is not None:
            them, ours = pair
            self.seen.discard((them.bare, ours.bare))
            self.component.send_presence(pto=them, pfrom=ours, ptype="unsubscribed")
            self.component.send_presence(pto=them, pfrom=ours, ptype="unavailable")

    def _available(self, them: JID, ours: JID) -> None:
        self.seen.add((them.bare, ours.bare))
        self.component.send_presence(pto=them, pfrom=ours, pstatus=STATUS)

    def _on_online(self, _: Any) -> None:
        """Back after a reconnection: whoever asked before hears it at once."""
        for them, ours in sorted(self.seen):
            self.component.send_presence(pto=them, pfrom=ours, pstatus=STATUS)

    def going_offline(self) -> None:
        """Before a clean stop, while still connected: tell whoever asked."""
        for them, ours in sorted(self.seen):
            self.component.send_presence(pto=them, pfrom=ours, ptype="unavailable")


def attach_presence(component: BridgeComponent) -> PresenceShell:
    return PresenceShell(component)
