"""The XEP-0114 component: the bridge's only connection to XMPP.

This is protocol glue. It knows how to create nodes, publish exact bytes, subscribe, discover and
fetch; it does not know what IODEF is. What to do with an item is the job of the ``ItemSink`` handed
in by ``bridge.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Protocol
from xml.etree import ElementTree as ET
from xml.sax.saxutils import quoteattr

from slixmpp import ComponentXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatcherId

from xmppbridge.errors import PublishFailed
from xmppbridge.iodef.model import NS_V1, NS_V2

log = logging.getLogger(__name__)

PUBSUB_NS = "http://jabber.org/protocol/pubsub"
IODEF_TYPES = (NS_V1, NS_V2)
IQ_TIMEOUT = 30.0


class ItemSink(Protocol):
    """Receives what arrives from remote nodes (event notifications and fetched items alike)."""

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None: ...

    def on_retract(self, service: str, node: str, item_id: str) -> None: ...


class BridgeComponent(ComponentXMPP):
    def __init__(self, jid: str, secret: str, host: str, port: int, sink: ItemSink) -> None:
        # fix_error_ns: without it every IqError reads feature-not-implemented, because the real
        # <error> arrives in the jabber:component:accept namespace (LAB-NOTES §5).
        super().__init__(jid, secret, host, port, fix_error_ns=True)
        self.sink = sink
        # xep_0128 reads the pubsub#meta-data form in a node's disco#info (RFC 8600 discovery).
        for plugin in ("xep_0030", "xep_0004", "xep_0128", "xep_0060"):
            self.register_plugin(plugin)
        self.online = asyncio.Event()
        self.add_event_handler("session_start", lambda _: self.online.set())
        self.add_event_handler("disconnected", lambda _: self.online.clear())
        self.add_event_handler("pubsub_publish", self._on_publish)
        self.add_event_handler("pubsub_retract", self._on_retract)
        self._known_nodes: set[tuple[str, str]] = set()

    @property
    def pubsub(self) -> Any:
        return self.plugin["xep_0060"]

    # -- receiving ---------------------------------------------------------------------------------

    def _on_publish(self, msg: Any) -> None:
        # Never iterate msg['pubsub_event']['items'] here: it shares an iterator with xep_0060's own
        # loop and never ends (LAB-NOTES §5). xep_0060 already fires once per item.
        items = msg["pubsub_event"]["items"]
        item = items["item"]
        payload = item.xml[0] if len(item.xml) else None
        self.sink.on_item(msg["from"].bare, items["node"], item["id"], payload)

    def _on_retract(self, msg: Any) -> None:
        items = msg["pubsub_event"]["items"]
        self.sink.on_retract(msg["from"].bare, items["node"], items["retract"]["id"])

    # -- publishing --------------------------------------------------------------------------------

    async def ensure_node(self, service: str, node: str, *, access_model: str, payload_type: str,
                          members: Iterable[str] = ()) -> None:
        """Create ``node`` with a configuration that fits its restriction, unless it exists."""
        if (service, node) in self._known_nodes:
            return
        form = self.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="pubsub#persist_items", value="1")
        form.add_field(var="pubsub#max_items", value="max")
        form.add_field(var="pubsub#access_model", value=access_model)
        form.add_field(var="pubsub#type", value=payload_type)  # RFC 8600 §5: the payload namespace
        form.add_field(var="pubsub#notify_retract", value="1")
        form.add_field(var="pubsub#deliver_payloads", value="1")
        form.add_field(var="pubsub#send_last_published_item", value="never")
        try:
            await self.pubsub.create_node(service, node, config=form, ifrom=self.boundjid.bare,
                                          timeout=IQ_TIMEOUT)
            log.info("created node %s on %s (access model %s)", node, service, access_model)
        except IqError as exc:
            if exc.condition != "conflict":
                raise PublishFailed(f"cannot create node {node} on {service}: {_describe(exc)}") from None
        except IqTimeout:
            raise PublishFailed(f"{service} did not answer create-node", transient=True) from None
        members = list(members)
        if members and access_model == "whitelist":
            try:
                await self.pubsub.modify_affiliations(
                    service, node, affiliations=[(jid, "member") for jid in members],
                    ifrom=self.boundjid.bare, timeout=IQ_TIMEOUT)
            except (IqError, IqTimeout) as exc:
                raise PublishFailed(f"cannot whitelist {members} on {node}: {_describe(exc)}",
                                    transient=isinstance(exc, IqTimeout)) from None
        self._known_nodes.add((service, node))

    async def publish_bytes(self, service: str, node: str, item_id: str, payload: bytes) -> None:
        """Publish ``payload`` exactly as given.

        slixmpp would re-serialise an ElementTree payload and silently drop attributes in namespaces
        it has no prefix for, so the publish IQ is written by hand around the wire-form bytes.
        """
        iq_id = self.new_id()
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_reply(stanza: Any) -> None:
            if not result.done() and stanza["from"].bare == service:
                result.set_result(stanza)

        self.register_handler(Callback(f"publish-{iq_id}", MatcherId(iq_id), on_reply, once=True))
        self.send_raw(
            f"<iq type='set' id={quoteattr(iq_id)} from={quoteattr(self.boundjid.bare)} "
            f"to={quoteattr(service)}><pubsub xmlns='{PUBSUB_NS}'><publish node={quoteattr(node)}>"
            f"<item id={quoteattr(item_id)}>{payload.decode('utf-8')}</item></publish></pubsub></iq>"
        )
        try:
            reply = await asyncio.wait_for(result, IQ_TIMEOUT)
        except TimeoutError:
            raise PublishFailed(f"no answer from {service} within {IQ_TIMEOUT:.0f} s",
                                transient=True) from None
        finally:
            self.remove_handler(f"publish-{iq_id}")
        if reply["type"] == "error":
            error = reply["error"]
            raise PublishFailed(f"{service} refused the item on {node}: {error['condition']} {error['text']}")

    async def retract(self, service: str, node: str, item_id: str) -> None:
        await self.pubsub.retract(service, node, item_id, notify=True, ifrom=self.boundjid.bare,
                                  timeout=IQ_TIMEOUT)

    # -- subscribing -------------------------------------------------------------------------------

    async def subscribe(self, service: str, node: str) -> None:
        """Subscribe our bare JID; subscribing again is harmless (the service keeps one subscription)."""
        await self.pubsub.subscribe(service, node, ifrom=self.boundjid.bare, timeout=IQ_TIMEOUT)

    async def discover_iodef_nodes(self, service: str) -> list[str]:
        """Nodes of ``service`` whose ``pubsub#type`` is an IODEF namespace (RFC 8600 §5)."""
        disco = self.plugin["xep_0030"]
        reply = await disco.get_items(jid=service, ifrom=self.boundjid.bare, timeout=IQ_TIMEOUT)
        found = []
        for _jid, node, _name in reply["disco_items"]["items"]:
            if not node:
                continue
            info = await disco.get_info(jid=service, node=node, ifrom=self.boundjid.bare, timeout=IQ_TIMEOUT)
            form = info["disco_info"]["form"]
            if form["values"].get("pubsub#type") in IODEF_TYPES:
                found.append(node)
        return found

    async def fetch_items(self, service: str, node: str) -> int:
        """Hand every item currently on ``node`` to the sink; returns how many there were."""
        reply = await self.pubsub.get_items(service, node, ifrom=self.boundjid.bare, timeout=IQ_TIMEOUT)
        count = 0
        for item in reply["pubsub"]["items"]:
            payload = item.xml[0] if len(item.xml) else None
            self.sink.on_item(service, node, item["id"], payload)
            count += 1
        return count


def _describe(exc: IqError | IqTimeout) -> str:
    if isinstance(exc, IqTimeout):
        return "timed out"
    return f"{exc.condition} {exc.text}".strip()
