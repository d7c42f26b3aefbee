"""The XEP-0114 component: the bridge's only connection to XMPP.

This is protocol glue. It knows how to create nodes, publish exact bytes, subscribe, discover and
fetch; it does not know what IODEF is. What to do with an item is the job of the ``ItemSink`` handed
in by ``process/run.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol
from xml.etree import ElementTree as ET
from xml.sax.saxutils import quoteattr

from slixmpp import ComponentXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004 import Form

from xmppbridge.errors import PublishFailed
from xmppbridge.iodef.model import NS_V1, NS_V2
from xmppbridge.peers import TIMEOUT
from xmppbridge.xmpp.authorization import AuthorizationRequest, authorization_request
from xmppbridge.xmpp.servers import Rotation, ServerAddress
from xmppbridge.xmpp.stanzas import (
    IQ,
    PUBSUB_NS,
    Notification,
    Published,
    StanzaError,
    bare,
    error_of,
    notification,
    subscriptions_of,
)

log = logging.getLogger(__name__)

PUBSUB_ERRORS_NS = "http://jabber.org/protocol/pubsub#errors"  # XEP-0060 §14.2
IODEF_TYPES = (NS_V1, NS_V2)
IQ_TIMEOUT = 30.0
# Errors that say "try again later" rather than "no": the s2s link or the peer is down for now.
TRANSIENT_CONDITIONS = ("remote-server-timeout", "remote-server-not-found", "recipient-unavailable",
                        "service-unavailable", "resource-constraint")
# Notifications are stored at most once every HOLD_SECONDS, each time all that came meanwhile in one
# transaction (or as soon as HOLD_NOTIFICATIONS have come). Under load a commit per item cost the
# receiving bridge ~0.2 ms an item, an eighth of its time (BENCHMARKS.md §3); a notification that comes
# when nothing was stored for that long is stored at once, so only a busy receiver adds latency, at
# most 20 ms. A held item is still on the peer's node: should the process die holding it, the next
# check of the node or the catch-up after the restart fetches it again.
HOLD_SECONDS = 0.02
HOLD_NOTIFICATIONS = 64
# slixmpp names the timer of each IQ it sends so (slixmpp.stanza.iq.Iq.send); see ``schedule``.
IQ_TIMER_PREFIX = "IqTimeout_"

InOrder = Callable[[ET.Element], None]


class ItemSink(Protocol):
    """Receives what arrives from remote nodes (event notifications and fetched items alike)."""

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None: ...

    def on_retract(self, service: str, node: str, item_id: str) -> None: ...

    def batch(self) -> AbstractContextManager[object]:
        """Items and retractions handed over inside may be stored together, on the way out."""
        ...


class BridgeComponent(ComponentXMPP):
    def __init__(self, jid: str, secret: str, servers: Sequence[ServerAddress], sink: ItemSink) -> None:
        """``servers``: the server's component addresses (several for the nodes of a cluster), tried in
        turn (``xmpp.servers``)."""
        self.rotation = Rotation(tuple(servers))
        first = self.rotation.current
        # fix_error_ns: without it every IqError reads feature-not-implemented, because the real
        # <error> arrives in the jabber:component:accept namespace (INTEROP.md §4).
        super().__init__(jid, secret, first.host, first.port, fix_error_ns=True)
        self.sink = sink
        self.stopping = False  # set by the owner before disconnecting on purpose
        self._outage_since: float | None = None
        # xep_0128 reads the pubsub#meta-data form in a node's disco#info (RFC 8600 discovery).
        for plugin in ("xep_0030", "xep_0004", "xep_0128", "xep_0060"):
            self.register_plugin(plugin)
        self.online = asyncio.Event()
        self.offline = asyncio.Event()
        self.offline.set()
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("disconnected", self._on_disconnected)
        self._known_nodes: set[tuple[str, str]] = set()
        self._node_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # Our hand-written pubsub IQs by id: (the service that must answer, its answer, ``in_order``).
        self._awaiting: dict[str, tuple[str, asyncio.Future[ET.Element], InOrder | None]] = {}
        # The timeouts of slixmpp's IQs in flight, by timer name: fired early when the connection drops,
        # and the ids of those so failed at the last loss (``_unless_link_lost``).
        self._iq_timers: dict[str, Callable[[], None]] = {}
        self._dropped: set[str] = set()
        self._held: list[Notification] = []
        self._hold_timer: asyncio.TimerHandle | None = None
        self._delivered_at = float("-inf")  # loop time of the last delivery
        self._received_at = float("-inf")  # monotonic time the server last sent us any bytes (keepalive)
        # XEP-0060 §8.6 subscription requests to our nodes go here (xmpp.approvals), not to the chat.
        self.on_authorization: Callable[[AuthorizationRequest], None] | None = None

    @property
    def pubsub(self) -> Any:
        return self.plugin["xep_0060"]

    def data_received(self, data: bytes | str) -> None:
        # slixmpp handles every stanza of one read from the server right here, synchronously: one sink
        # batch per read stores the items fetched in it with one commit instead of one each.
        self._received_at = time.monotonic()  # any bytes say the server is alive (``probe_link``)
        with self.sink.batch():
            super().data_received(data)
        if self._held and self._hold_timer is None:
            wait = self._delivered_at + HOLD_SECONDS - self.loop.time()
            if wait <= 0:
                self.deliver_held()
            else:
                self._hold_timer = self.loop.call_later(wait, self.deliver_held)

    def _spawn_event(self, xml: ET.Element) -> None:
        """Each stanza, in stream order. Notifications and answers to our pubsub IQs are handled here
        from the XML (``stanzas.py`` says why); slixmpp's stanza objects and handlers get the rest."""
        if xml.tag == IQ and self._answer(xml):
            return
        note = notification(xml)
        if note is None:
            handler = self.on_authorization
            request = authorization_request(xml) if handler is not None else None
            if handler is None or request is None:
                super()._spawn_event(xml)
            else:
                handler(request)
            return
        self._held.append(note)  # data_received decides when they are handed over
        if len(self._held) >= HOLD_NOTIFICATIONS:
            self.deliver_held()

    def deliver_held(self) -> None:
        """Hand the notifications held so far to the sink, in the order they came, in one batch."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        held, self._held = self._held, []
        if not held:
            return
        self._delivered_at = self.loop.time()
        try:
            with self.sink.batch():
                for note in held:
                    self._deliver(note)
        except Exception:  # noqa: BLE001 - e.g. the commit failed: the items are still on their nodes
            log.exception("storing held notifications (%d) failed; the next check of their nodes "
                          "fetches them again", len(held))

    def _deliver(self, note: Notification) -> None:
        for change in note.changes:
            try:
                if isinstance(change, Published):
                    self.sink.on_item(note.service, note.node, change.item_id, change.payload)
                else:
                    self.sink.on_retract(note.service, note.node, change.item_id)
            except Exception:  # noqa: BLE001 - e.g. the store locked for too long by another process
                # Raised from here, it would end the connection (asyncio closes a transport whose
                # protocol raises). The item stays on the node: a later check of the node, or the
                # catch-up after a reconnection, fetches it again.
                log.exception("handling item %s of %s on %s failed", change.item_id, note.node, note.service)

    def _answer(self, iq: ET.Element) -> bool:
        """Hand an IQ answer to the ``_pubsub_iq`` waiting for it; False if none is."""
        waiting = self._awaiting.get(iq.get("id", ""))
        if waiting is None or iq.get("type") not in ("result", "error"):
            return False
        service, answer, in_order = waiting
        if answer.done() or bare(iq.get("from")) != service:
            return False  # not the answer we wait for (e.g. sent by someone else): slixmpp's business
        try:
            if in_order is not None and iq.get("type") == "result":
                self.deliver_held()  # what came before the answer is handed over before it
                in_order(iq)
        except Exception as exc:  # noqa: BLE001 - the caller's to handle, not the connection's
            answer.set_exception(exc)
        else:
            answer.set_result(iq)
        return True

    # -- connection --------------------------------------------------------------------------------

    @property
    def server(self) -> ServerAddress:
        """The server address connected to, or to be tried next."""
        return self.rotation.current

    def _on_session_start(self, _: Any) -> None:
        if self._outage_since is not None:
            log.info("reconnected to %s after %.1f s (%d failed attempts)", self.server,
                     time.monotonic() - self._outage_since, self.rotation.failures)
        self._outage_since = None
        self.rotation.connected()
        self.offline.clear()
        self.online.set()

    def _on_disconnected(self, reason: Any) -> None:
        self.deliver_held()
        # The server may have restarted and lost nodes: the next publish creates each one again with its
        # audience's members (or meets "conflict" and sets them), instead of auto-creating it bare.
        self._known_nodes.clear()
        self.online.clear()
        self.offline.set()
        self._fail_in_flight()  # after online is cleared: callers then see that the link is down
        if self.stopping:
            return
        if self._outage_since is None:
            # One line per outage, not one per attempt.
            self._outage_since = time.monotonic()
            log.warning("lost the connection to %s (%s); reconnecting", self.server, reason or "closed")
        asyncio.get_running_loop().call_later(self._next_server(), self._reconnect)

    def _fail_in_flight(self) -> None:
        """Every request sent on the lost connection fails now rather than at its timeout: no answer can
        come on a new connection, and waiting 30 s held the outbox's whole window (each publish in flight
        keeps a place in it) and the mirror's node listing, so that after a node of a cluster died,
        nothing was published or caught up for 30 s. Failed as transient, they are sent again on the
        next connection: the outbox republishes (same item id, same bytes: an overwrite, never a second
        item) and the catch-up after the reconnection lists and fetches every node again."""
        for service, answer, _ in list(self._awaiting.values()):
            if not answer.done():
                answer.set_exception(self._link_lost(service))
        self._dropped = {name.removeprefix(IQ_TIMER_PREFIX) for name in self._iq_timers}
        for name, expire in list(self._iq_timers.items()):
            super().cancel_schedule(name)
            expire()  # slixmpp's own timeout: an IqTimeout, which ``_unless_link_lost`` tells apart

    def _link_lost(self, service: str) -> PublishFailed:
        """Transient, and with no condition: it says nothing about ``service`` (``peer_failure``)."""
        return PublishFailed(f"the connection to {self.server} was lost before {service} answered",
                             transient=True)

    @contextmanager
    def _unless_link_lost(self, service: str) -> Iterator[None]:
        """Around a slixmpp request: its IqTimeout fired by ``_fail_in_flight`` becomes ``_link_lost``, so
        that the mirror neither logs "no answer within 30 s" nor counts it against the peer."""
        try:
            yield
        except IqTimeout as exc:
            if exc.iq["id"] in self._dropped:
                raise self._link_lost(service) from None
            raise

    def schedule(self, name: str, seconds: int, callback: Callable[..., None], args: tuple[Any, ...] = (),
                 kwargs: dict[Any, Any] | None = None, repeat: bool = False) -> None:
        """slixmpp's timer for each IQ it sends is kept by name as well, so that ``_fail_in_flight`` can
        fire it at once; everything else is slixmpp's own."""
        call = functools.partial(callback, *args, **(kwargs or {}))
        if not name.startswith(IQ_TIMER_PREFIX) or repeat:
            super().schedule(name, seconds, call, repeat=repeat)
            return

        def expire() -> None:
            self._iq_timers.pop(name, None)
            call()

        super().schedule(name, seconds, expire)
        self._iq_timers[name] = expire

    def cancel_schedule(self, name: str) -> None:
        self._iq_timers.pop(name, None)  # answered in time
        super().cancel_schedule(name)

    def _reconnect(self) -> None:
        if not self.stopping and not self.online.is_set():
            self.connect()

    def reschedule_connection_attempt(self) -> asyncio.Future[Any] | None:
        """slixmpp's own retry after a refused TCP connect, with our backoff (its own grows to 300 s) and
        the next server address."""
        if self._current_connection_attempt is None or self.stopping:
            return None
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("cannot connect to %s; retrying", self.server)  # once per outage
        self._connect_loop_wait = self._next_server()
        self.custom_address = (self.server_host, self.server_port)  # what slixmpp's retry connects to
        self._current_connection_attempt = asyncio.ensure_future(self._connect_loop())
        return self._current_connection_attempt

    def _next_server(self) -> float:
        """Move to the next server address; the delay before trying it."""
        delay = self.rotation.failed()
        self.server_host, self.server_port = self.rotation.current.host, self.rotation.current.port
        return delay

    # -- publishing --------------------------------------------------------------------------------

    async def ensure_node(self, service: str, node: str, *, access_model: str, payload_type: str,
                          members: Iterable[str] = ()) -> None:
        """Create ``node`` with a configuration that fits its restriction, unless it exists."""
        if (service, node) in self._known_nodes:
            return
        # The outbox drain publishes several items at once: create (and whitelist) each node once.
        async with self._node_locks.setdefault((service, node), asyncio.Lock()):
            if (service, node) not in self._known_nodes:
                await self._create_node(service, node, access_model=access_model, payload_type=payload_type,
                                        members=list(members))
                self._known_nodes.add((service, node))

    async def _create_node(self, service: str, node: str, *, access_model: str, payload_type: str,
                           members: list[str]) -> None:
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
        # Members of an authorize node may read it at once; their subscriptions are approved by
        # xmpp.approvals, as ejabberd holds every subscription to such a node, members' too.
        if members and access_model in ("whitelist", "authorize"):
            try:
                await self.pubsub.modify_affiliations(
                    service, node, affiliations=[(jid, "member") for jid in members],
                    ifrom=self.boundjid.bare, timeout=IQ_TIMEOUT)
            except (IqError, IqTimeout) as exc:
                raise PublishFailed(f"cannot whitelist {members} on {node}: {_describe(exc)}",
                                    transient=isinstance(exc, IqTimeout)) from None

    async def publish_bytes(self, service: str, node: str, item_id: str, payload: bytes) -> None:
        """Publish ``payload`` exactly as given.

        slixmpp would re-serialise an ElementTree payload and silently drop attributes in namespaces
        it has no prefix for, so the publish IQ is written by hand around the wire-form bytes.
        """
        answer = await self._pubsub_iq("set", service, f"<publish node={quoteattr(node)}><item "
                                       f"id={quoteattr(item_id)}>{payload.decode('utf-8')}</item></publish>")
        error = error_of(answer)
        if error is not None:
            raise PublishFailed(f"{service} refused the item on {node}: {_condition(error)}",
                                transient=error.condition in TRANSIENT_CONDITIONS, condition=error.condition,
                                text=error.text)

    async def _pubsub_iq(self, iq_type: str, service: str, body: str, in_order: InOrder | None = None
                         ) -> ET.Element:
        """Send a hand-written pubsub IQ and return its answer (a result or an error, ``error_of``).

        ``in_order`` runs on a result as it is read from the stream, i.e. in stream order with event
        notifications, rather than later when the awaiting coroutine resumes.
        """
        if not self.online.is_set():
            # Written straight to the socket, not queued by slixmpp until the next session: the caller
            # tries again once it is back (the outbox waits for ``online``).
            raise PublishFailed(f"not connected to {self.server}", transient=True)
        iq_id = self.new_id()
        answer: asyncio.Future[ET.Element] = asyncio.get_running_loop().create_future()
        self._awaiting[iq_id] = (service, answer, in_order)
        try:
            self.send_raw(
                f"<iq type={quoteattr(iq_type)} id={quoteattr(iq_id)} from={quoteattr(self.boundjid.bare)} "
                f"to={quoteattr(service)}><pubsub xmlns='{PUBSUB_NS}'>{body}</pubsub></iq>"
            )
            return await asyncio.wait_for(answer, IQ_TIMEOUT)
        except TimeoutError:
            raise PublishFailed(f"no answer from {service} within {IQ_TIMEOUT:.0f} s",
                                transient=True, condition=TIMEOUT) from None
        finally:
            del self._awaiting[iq_id]

    async def retract(self, service: str, node: str, item_id: str) -> None:
        await self.pubsub.retract(service, node, item_id, notify=True, ifrom=self.boundjid.bare,
                                  timeout=IQ_TIMEOUT)

    # -- subscribing -------------------------------------------------------------------------------

    async def subscribe(self, service: str, node: str, *, ask_again: bool = False) -> str:
        """Subscribe our bare JID; subscribing again is harmless (the service keeps one subscription).
        The subscription's state: ``subscribed``, or ``pending`` on an authorize node until its owner
        approves (XEP-0060 §6.1.4).

        ``ask_again`` (the mirror's first subscription after a connection, and its renewals of the nodes
        it follows): a request of ours still pending from before is withdrawn and made anew, so that the
        owner is asked again. Its form or its answer may have been lost, with the cluster node that held
        it say, and ejabberd neither sends the form again when asked the same subscription (§6.1.3.7)
        nor, with pubsub in SQL, when the owner asks for pending requests (§8.7: its SQL backend lists
        them from the Mnesia tables, which hold none)."""
        state = await self._request_subscription(service, node)
        if state is not None:
            return state
        if ask_again:
            await self.unsubscribe(service, node)
            state = await self._request_subscription(service, node)
        return state or "pending"

    async def _request_subscription(self, service: str, node: str) -> str | None:
        """The subscription's state; None when a request of ours already waits for the owner: ejabberd
        then answers not-authorized with <pending-subscription/> (§6.1.3.7), which is no refusal (the
        caller still catches up: members may read the node)."""
        try:
            with self._unless_link_lost(service):
                answer = await self.pubsub.subscribe(service, node, ifrom=self.boundjid.bare,
                                                     timeout=IQ_TIMEOUT)
        except IqError as exc:
            if exc.iq.xml.find(f".//{{{PUBSUB_ERRORS_NS}}}pending-subscription") is not None:
                return None
            raise
        return str(answer["pubsub"]["subscription"]["subscription"] or "subscribed")

    async def unsubscribe(self, service: str, node: str) -> None:
        """Cancel our bare JID's subscription (XEP-0060 §6.2): a member that left sends us nothing more,
        and a pending request of ours is withdrawn (``subscribe``'s ask_again)."""
        with self._unless_link_lost(service):
            await self.pubsub.unsubscribe(service, node, ifrom=self.boundjid.bare, timeout=IQ_TIMEOUT)

    async def affiliation(self, service: str, node: str) -> str | None:
        """Our bare JID's affiliation with ``node`` as the service tells it (XEP-0060 §5.7): ``none`` when
        it lists none for the node, None when it does not answer the request (an error: not supported)."""
        try:
            with self._unless_link_lost(service):
                answer = await self.pubsub.get_affiliations(service, node=node, ifrom=self.boundjid.bare,
                                                            timeout=IQ_TIMEOUT)
        except IqError:
            return None
        for affiliation in answer.xml.iter(f"{{{PUBSUB_NS}}}affiliation"):
            if affiliation.get("node", node) == node:
                return affiliation.get("affiliation", "none")
        return "none"

    async def subscriptions(self, service: str) -> dict[str, str] | None:
        """Our bare JID's subscriptions on ``service``, node -> state, in one request (XEP-0060 §5.6):
        the renewals of a round ask this once per peer rather than subscribing again node by node. None
        when the service refuses the request (not supported); an error that says the peer is away for
        now (``TRANSIENT_CONDITIONS``) is raised, like a timeout."""
        try:
            with self._unless_link_lost(service):
                answer = await self.pubsub.get_subscriptions(service, ifrom=self.boundjid.bare,
                                                             timeout=IQ_TIMEOUT)
        except IqError as exc:
            if exc.condition in TRANSIENT_CONDITIONS:
                raise
            return None
        return subscriptions_of(answer.xml, self.boundjid.bare)

    async def discover_iodef_nodes(self, service: str, *, timeout: float = IQ_TIMEOUT,
                                   known: Collection[str] = ()) -> list[str]:
        """Nodes of ``service`` whose ``pubsub#type`` is an IODEF namespace (RFC 8600 §5); ``timeout`` per
        request (`xmppbridge doctor` gives its own). Nodes in ``known``, already found to be IODEF nodes,
        are not asked about again: still listed, they are still there. A round of discovery then costs
        one disco#items per peer instead of one more disco#info per node (SCALING.md: at 16 members
        and discovery every 10 s that was a request per second for each server to answer)."""
        disco = self.plugin["xep_0030"]
        with self._unless_link_lost(service):
            reply = await disco.get_items(jid=service, ifrom=self.boundjid.bare, timeout=timeout)
        found = []
        for _jid, node, _name in reply["disco_items"]["items"]:
            if not node:
                continue
            if node in known:
                found.append(node)
                continue
            with self._unless_link_lost(service):
                info = await disco.get_info(jid=service, node=node, ifrom=self.boundjid.bare, timeout=timeout)
            # A disco#info may carry several forms (ejabberd adds an empty serverinfo form after
            # pubsub#meta-data), and slixmpp's info["disco_info"]["form"] is only the last of them.
            types = {form["values"].get("pubsub#type") for form in info["disco_info"].iterables
                     if isinstance(form, Form)}
            if types & set(IODEF_TYPES):
                found.append(node)
        return found

    async def list_item_ids(self, service: str, node: str) -> list[str]:
        """Ids of the items on ``node`` (disco#items on the node, XEP-0060 §5.5): small replies, unlike
        fetching every item at once, which can exceed the 512 KB s2s stanza limit."""
        with self._unless_link_lost(service):
            reply = await self.plugin["xep_0030"].get_items(jid=service, node=node, ifrom=self.boundjid.bare,
                                                            timeout=IQ_TIMEOUT)
        return [name for _jid, _node, name in reply["disco_items"]["items"] if name]

    async def fetch_item(self, service: str, node: str, item_id: str) -> bool:
        """Fetch one item and hand it to the sink; False when the node no longer has it.

        The sink is called in stream order with event notifications (see ``_pubsub_iq``), so a fetch
        answered before an update can never overwrite that update.
        """
        found: list[ET.Element] = []

        def hand_over(answer: ET.Element) -> None:
            items = answer.find(f"{{{PUBSUB_NS}}}pubsub/{{{PUBSUB_NS}}}items")
            found.extend([] if items is None else items)
            for item in found:
                self.sink.on_item(service, node, item.get("id", item_id), item[0] if len(item) else None)

        answer = await self._pubsub_iq("get", service, f"<items node={quoteattr(node)}>"
                                       f"<item id={quoteattr(item_id)}/></items>", in_order=hand_over)
        error = error_of(answer)
        if error is not None:
            raise PublishFailed(f"{service} refused item {item_id} of {node}: {_condition(error)}",
                                transient=error.condition in TRANSIENT_CONDITIONS, condition=error.condition,
                                text=error.text)
        return bool(found)

    def sever(self) -> None:
        """Shut the connection's socket down at once, from any thread (the lease's watchdog, while the
        event loop is stuck): nothing more is sent on it, whatever the loop does when it gets on."""
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)

    async def keepalive(self, service: str, interval: float, timeout: float) -> None:
        """Detect a dead server link: a disco#info round trip every ``interval``; when it goes unanswered
        and the server sent nothing else meanwhile, drop the connection so that the reconnect logic takes
        over. (Components do not get mod_ping's answers for component hosts, INTEROP.md §1, but every
        pubsub service answers disco#info.)"""
        while True:
            await asyncio.sleep(interval)
            if self.online.is_set():
                await self.probe_link(service, timeout)

    async def probe_link(self, service: str, timeout: float) -> None:
        """One keepalive probe. A server that keeps sending (notifications, answers to other requests)
        but answers the probe late is busy, not gone: a hub's server fanning a burst out to many spokes
        fell behind by more than the timeout, and dropping the link made it worse, since every
        reconnection fetches every node again (SCALING.md, hub and spoke). A dead link sends nothing."""
        sent = time.monotonic()
        try:
            await self.plugin["xep_0030"].get_info(jid=service, ifrom=self.boundjid.bare, timeout=timeout,
                                                   cached=False)
        except IqTimeout:
            if not self.online.is_set():
                return  # the connection dropped meanwhile (``_fail_in_flight``)
            if self._received_at > sent:
                log.info("%s answered no keepalive within %.0f s but is still sending: busy, keeping the "
                         "connection", service, timeout)
                return
            log.warning("no answer from %s within %.0f s and nothing else from it; dropping the connection",
                        service, timeout)
            self.abort()
        except IqError:
            pass  # an error reply is still an answer: the link is alive


def peer_failure(exc: BaseException) -> StanzaError | None:
    """The error condition and text of a failed request to a peer: a stanza error (RFC 6120 §8.3.3)
    or ``timeout``. None for an exception that says nothing about the peer (the store, a bug)."""
    if isinstance(exc, IqError):
        return StanzaError(exc.condition or "undefined-condition", (exc.text or "").strip())
    if isinstance(exc, IqTimeout):
        return StanzaError(TIMEOUT, f"no answer within {IQ_TIMEOUT:.0f} s")
    if isinstance(exc, PublishFailed) and exc.condition is not None:
        return StanzaError(exc.condition, exc.text)
    return None


def explain(exc: BaseException) -> str:
    """For the log: slixmpp's errors print the whole error IQ; the condition and its text say it all."""
    failure = peer_failure(exc) if isinstance(exc, IqError | IqTimeout) else None
    if failure is None:
        return str(exc) or type(exc).__name__
    return f"{failure.condition} ({failure.text})" if failure.text else failure.condition


def _describe(exc: IqError | IqTimeout) -> str:
    if isinstance(exc, IqTimeout):
        return "timed out"
    return f"{exc.condition} {exc.text}".strip()


def _condition(error: StanzaError) -> str:
    return f"{error.condition} {error.text}".strip()
