"""Notifications and IQ answers read straight from the stream (``xmpp/stanzas.py``), through the real
slixmpp parser of the component: every item of a notification counts, nothing else sees notifications,
and answers reach the IQ waiting for them only from the service asked."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqTimeout
from slixmpp.plugins.xep_0004 import Form
from slixmpp.plugins.xep_0030.stanza import DiscoInfo

from xmppbridge.errors import PublishFailed
from xmppbridge.iodef.model import NS_V1, NS_V2
from xmppbridge.xmpp import component as component_module
from xmppbridge.xmpp.component import BridgeComponent, peer_failure
from xmppbridge.xmpp.servers import ServerAddress
from xmppbridge.xmpp.stanzas import (
    Published,
    Retracted,
    StanzaError,
    error_of,
    notification,
    subscriptions_of,
)

EVENT_NS = "http://jabber.org/protocol/pubsub#event"
STREAM = ("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' "
          "from='bridge.b.test' id='s1'>")


class RecordingSink:
    def __init__(self, fail_on: str = "", fail_commit: bool = False) -> None:
        self.events: list[tuple[str, str, str, str]] = []
        self.batches: list[list[str]] = []  # item ids handed over in each outermost batch
        self.fail_on, self.fail_commit = fail_on, fail_commit
        self._depth = 0

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None:
        if item_id == self.fail_on:
            raise RuntimeError("store locked")
        self.events.append(("item", service, node, item_id))
        if self._depth:
            self.batches[-1].append(item_id)
        else:
            self.batches.append([item_id])

    def on_retract(self, service: str, node: str, item_id: str) -> None:
        self.events.append(("retract", service, node, item_id))

    @contextmanager
    def batch(self) -> Iterator[None]:
        if not self._depth:
            self.batches.append([])
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth:
            if not self.batches[-1]:
                self.batches.pop()  # nothing written: nothing to commit
            elif self.fail_commit:
                raise RuntimeError("disk full")


def parse(stanza: str) -> ET.Element:
    return ET.fromstring(f"<stream xmlns='jabber:component:accept'>{stanza}</stream>")[0]


def event(items: str, *, sender: str = "pubsub.a.test/x", extra: str = "", mtype: str = "") -> str:
    kind = f" type='{mtype}'" if mtype else ""
    return (f"<message from='{sender}' to='bridge.b.test'{kind}>{extra}<event xmlns='{EVENT_NS}'>"
            f"<items node='iodef/public/reporting'>{items}</items></event></message>")


def test_a_notification_lists_every_item_and_retraction_in_order() -> None:
    note = notification(parse(event("<item id='1'><x xmlns='urn:x'/></item><retract id='0'/>"
                                    "<item id='2'/>")))
    assert note is not None
    assert (note.service, note.node) == ("pubsub.a.test", "iodef/public/reporting")
    first, retracted, empty = note.changes
    assert isinstance(first, Published) and first.item_id == "1"
    assert first.payload is not None and first.payload.tag == "{urn:x}x"
    assert retracted == Retracted("0")
    assert empty == Published("2", None)


@pytest.mark.parametrize("stanza", [
    event("<item id='1'/>", mtype="error"),  # a bounced notification is not one
    event("<item id='1'/>", sender="a@@b"),  # no usable sender
    "<message from='pubsub.a.test' to='bridge.b.test'><body>hello</body></message>",
    f"<message from='pubsub.a.test'><event xmlns='{EVENT_NS}'><purge node='n'/></event></message>",
    "<iq from='pubsub.a.test' type='result' id='1'/>",
])
def test_anything_else_is_not_a_notification(stanza: str) -> None:
    assert notification(parse(stanza)) is None


def test_errors_are_read_in_the_component_namespace() -> None:
    refused = parse("<iq type='error' id='1' from='pubsub.a.test'><error type='cancel'>"
                    "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                    "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'> gone </text></error></iq>")
    assert error_of(refused) == StanzaError("item-not-found", "gone")
    assert error_of(parse("<iq type='error' id='1'/>")) == StanzaError("undefined-condition", "")
    assert error_of(parse("<iq type='result' id='1'/>")) is None


PUBSUB = "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
OUR_SUBSCRIPTIONS = (
    f"{PUBSUB}<subscriptions>"
    "<subscription node='iodef/public/watch' jid='bridge.b.test' subscription='subscribed' subid='1'/>"
    "<subscription node='iodef/public/reporting' jid='bridge.b.test/r' subscription='pending' subid='2'/>"
    "<subscription node='iodef/public/reporting' jid='bridge.b.test' subscription='subscribed' subid='3'/>"
    "<subscription node='iodef/public/mitigation' jid='bridge.b.test' subscription='pending'/>"
    "<subscription node='iodef/public/traceback' jid='bridge.c.test' subscription='subscribed'/>"
    "<subscription jid='bridge.b.test' subscription='subscribed'/>"
    "</subscriptions></pubsub>")


def test_our_subscriptions_on_a_service_come_in_one_request() -> None:
    """XEP-0060 §5.6: only our bare JID's entries count, the furthest of several subids of a node, and an
    entry naming no node (a subscription to the service's root) is passed over."""
    answer = parse(f"<iq type='result' id='1' from='pubsub.a.test'>{OUR_SUBSCRIPTIONS}</iq>")
    assert subscriptions_of(answer, "bridge.b.test") == {
        "iodef/public/watch": "subscribed", "iodef/public/reporting": "subscribed",
        "iodef/public/mitigation": "pending"}
    assert subscriptions_of(parse("<iq type='result' id='1'/>"), "bridge.b.test") == {}

def started(sink: RecordingSink) -> BridgeComponent:
    component = BridgeComponent("bridge.b.test", "secret", [ServerAddress("127.0.0.1", 5347)], sink)
    component.init_parser()
    component.data_received(STREAM.encode())
    component.online.set()  # as session_start does, without slixmpp's own session handlers
    return component


async def handed_over(sink: RecordingSink, count: int) -> None:
    """Wait (up to 5 s, far beyond the hold) until ``count`` events reached the sink."""
    for _ in range(500):
        if len(sink.events) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(sink.events)} of {count} events handed over: {sink.events}")


async def test_every_item_of_a_notification_reaches_the_sink() -> None:
    sink = RecordingSink()
    component = started(sink)
    component.data_received(event("<item id='1'><x xmlns='urn:x'/></item><item id='2'><x xmlns='urn:x'/>"
                                  "</item><retract id='3'/>").encode())
    await handed_over(sink, 3)
    node = "iodef/public/reporting"
    assert sink.events == [("item", "pubsub.a.test", node, "1"), ("item", "pubsub.a.test", node, "2"),
                           ("retract", "pubsub.a.test", node, "3")]


async def test_a_notification_with_a_body_is_not_a_chat_message() -> None:
    sink = RecordingSink()
    component = started(sink)
    messages: list[object] = []
    component.add_event_handler("message", messages.append)
    component.data_received(event("<item id='1'/>", extra="<body>New item</body>").encode())
    component.data_received(b"<message from='alice@b.test/pc' to='bridge.b.test' type='chat'>"
                            b"<body>help</body></message>")
    await handed_over(sink, 1)
    assert [e[3] for e in sink.events] == ["1"]
    assert len(messages) == 1 and messages[0]["body"] == "help"  # type: ignore[index]


async def test_a_failing_item_is_logged_and_the_others_still_arrive(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink(fail_on="1")
    component = started(sink)
    component.data_received(event("<item id='1'/><item id='2'/>").encode())  # must not raise
    assert [e[3] for e in sink.events] == ["2"]
    assert "handling item 1 of iodef/public/reporting on pubsub.a.test failed" in caplog.text


def sent_id(sent: list[str]) -> str:
    match = re.search(r"id='([^']+)'", sent[-1]) or re.search(r'id="([^"]+)"', sent[-1])
    assert match is not None
    return match.group(1)


async def test_an_answer_counts_only_from_the_service_asked() -> None:
    component = started(RecordingSink())
    sent: list[str] = []
    component.send_raw = sent.append  # type: ignore[method-assign]
    payload = b"<x xmlns='urn:x'/>"
    publishing = asyncio.ensure_future(component.publish_bytes("pubsub.a.test", "n", "1", payload))
    await asyncio.sleep(0)
    iq_id = sent_id(sent)
    # Someone else answering with the same id is not the service: slixmpp gets it, the publish waits.
    component.data_received(f"<iq type='result' id='{iq_id}' from='mallory.test'/>".encode())
    await asyncio.sleep(0)
    assert not publishing.done()
    component.data_received(f"<iq type='error' id='{iq_id}' from='pubsub.a.test'><error type='wait'>"
                            "<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                            "</error></iq>".encode())
    with pytest.raises(PublishFailed, match="refused the item on n: resource-constraint") as refused:
        await publishing
    assert refused.value.transient
    assert not component._awaiting  # nothing left waiting


async def fetch_seven(component: BridgeComponent) -> tuple[asyncio.Future[bool], str]:
    """Item 7 of node n fetched from pubsub.a.test: the fetch under way, and the server's answer to it."""
    sent: list[str] = []
    component.send_raw = sent.append  # type: ignore[method-assign]
    fetching = asyncio.ensure_future(component.fetch_item("pubsub.a.test", "n", "7"))
    await asyncio.sleep(0)
    answer = (f"<iq type='result' id='{sent_id(sent)}' from='pubsub.a.test'>"
              "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'>"
              "<item id='7'><x xmlns='urn:x'/></item></items></pubsub></iq>")
    return fetching, answer


async def test_a_fetch_hands_its_item_over_in_stream_order() -> None:
    sink = RecordingSink()
    component = started(sink)
    fetching, answer = await fetch_seven(component)
    # The answer, then a notification, in one read: the fetched item must be handed over first.
    component.data_received((answer + event("<item id='8'/>")).encode())
    await handed_over(sink, 2)
    assert [e[3] for e in sink.events] == ["7", "8"]
    assert await fetching is True


def busy(component: BridgeComponent) -> None:
    """As if the component had just stored something: the next notifications are held."""
    component._delivered_at = component.loop.time()


async def test_a_notification_is_handed_over_at_once_when_nothing_was_stored_lately() -> None:
    sink = RecordingSink()
    component = started(sink)
    component.data_received(event("<item id='1'/>").encode())
    assert [e[3] for e in sink.events] == ["1"]


async def test_notifications_held_before_a_fetch_answer_are_handed_over_before_it() -> None:
    sink = RecordingSink()
    component = started(sink)
    fetching, answer = await fetch_seven(component)
    busy(component)
    component.data_received(event("<item id='8'/>").encode())
    assert sink.events == []  # held
    component.data_received(answer.encode())
    assert [e[3] for e in sink.events] == ["8", "7"]  # stream order, at once
    assert await fetching is True


async def test_a_busy_receiver_hands_over_the_notifications_of_several_reads_in_one_batch() -> None:
    sink = RecordingSink()
    component = started(sink)
    for item_id in ("1", "2", "3", "4"):
        component.data_received(event(f"<item id='{item_id}'/>").encode())
    assert sink.batches == [["1"]]  # at once; the others came within the hold
    await handed_over(sink, 4)
    assert sink.batches == [["1"], ["2", "3", "4"]]


async def test_a_full_hold_is_handed_over_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(component_module, "HOLD_NOTIFICATIONS", 2)
    sink = RecordingSink()
    component = started(sink)
    busy(component)
    component.data_received((event("<item id='1'/>") + event("<item id='2'/>") + event("<item id='3'/>")
                             ).encode())
    assert sink.batches == [["1", "2"]]  # the third waits for the next group
    await handed_over(sink, 3)
    assert sink.batches == [["1", "2"], ["3"]]


async def test_held_notifications_are_handed_over_when_the_connection_drops() -> None:
    sink = RecordingSink()
    component = started(sink)
    busy(component)
    component.data_received(event("<item id='1'/>").encode())
    assert sink.events == []
    component.event("disconnected", "gone")
    assert [e[3] for e in sink.events] == ["1"]


async def test_a_failing_commit_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink(fail_commit=True)
    component = started(sink)
    component.data_received(event("<item id='1'/><item id='2'/>").encode())  # must not raise
    assert "storing held notifications (1) failed; the next check of their nodes fetches them" in caplog.text


async def test_requests_in_flight_fail_at_once_when_the_connection_drops() -> None:
    """No answer can come on the next connection: the callers (the outbox, the catch-up) must not wait
    out IQ_TIMEOUT before they send again there."""
    component = started(RecordingSink())
    component.stopping = True  # no reconnection attempt from this test
    component.send_raw = [].append  # type: ignore[method-assign]
    payload = b"<x xmlns='urn:x'/>"
    publishing = asyncio.ensure_future(component.publish_bytes("pubsub.a.test", "n", "1", payload))
    subscribing = asyncio.ensure_future(component.subscribe("pubsub.a.test", "n"))  # slixmpp's own IQ
    await asyncio.sleep(0)
    assert component._awaiting and component._iq_timers
    component.event("disconnected", "gone")
    done, _ = await asyncio.wait({publishing, subscribing}, timeout=5)
    assert done == {publishing, subscribing}
    for request in (publishing, subscribing):
        failure = request.exception()
        # Transient, and not the peer's failure (no condition, so peer_failure leaves its health alone).
        assert isinstance(failure, PublishFailed) and failure.transient and peer_failure(failure) is None
        assert "lost before pubsub.a.test answered" in str(failure)
    assert not component._awaiting and not component._iq_timers
    with pytest.raises(PublishFailed, match="not connected") as offline:  # and nothing is sent meanwhile
        await component.publish_bytes("pubsub.a.test", "n", "2", payload)
    assert offline.value.transient


async def test_an_answered_request_leaves_no_timer_behind() -> None:
    component = started(RecordingSink())
    info = asyncio.ensure_future(component.plugin["xep_0030"].get_info(
        jid="pubsub.a.test", ifrom="bridge.b.test", cached=False, timeout=30))
    await asyncio.sleep(0)
    (name,) = component._iq_timers
    iq_id = name.removeprefix(component_module.IQ_TIMER_PREFIX)
    component.data_received(f"<iq type='result' id='{iq_id}' from='pubsub.a.test' to='bridge.b.test'>"
                            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>".encode())
    await asyncio.wait_for(info, 5)
    assert not component._iq_timers


def answer_last(component: BridgeComponent, body: str, kind: str = "result") -> None:
    """Answer, from pubsub.a.test, the slixmpp request sent last."""
    iq_id = list(component._iq_timers)[-1].removeprefix(component_module.IQ_TIMER_PREFIX)
    component.data_received(f"<iq type='{kind}' id='{iq_id}' from='pubsub.a.test' to='bridge.b.test'>"
                            f"{body}</iq>".encode())


# XEP-0060 §6.1.3.7, as ejabberd answers a subscriber asking again before the owner decided.
STILL_PENDING = ("<error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                 "<pending-subscription xmlns='http://jabber.org/protocol/pubsub#errors'/></error>")


async def test_a_subscription_still_waiting_for_its_owner_is_pending_not_refused() -> None:
    component = started(RecordingSink())
    subscribing = asyncio.ensure_future(component.subscribe("pubsub.a.test", "n"))
    await asyncio.sleep(0)
    answer_last(component, STILL_PENDING, "error")
    assert await asyncio.wait_for(subscribing, 5) == "pending"


async def test_asked_again_a_pending_request_is_withdrawn_and_made_anew() -> None:
    """So that the owner gets a new form when the first one, or its answer, was lost."""
    component = started(RecordingSink())
    sent: list[object] = []
    component.send = sent.append  # type: ignore[method-assign] # slixmpp's requests, as they go out
    subscribing = asyncio.ensure_future(component.subscribe("pubsub.a.test", "n", ask_again=True))
    pubsub = "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
    for answer, kind in ((STILL_PENDING, "error"), ("", "result"),
                         (f"{pubsub}<subscription node='n' jid='bridge.b.test' subscription='pending'/>"
                          "</pubsub>", "result")):
        for _ in range(100):  # until the next request is out
            await asyncio.sleep(0.01)
            if component._iq_timers:
                break
        answer_last(component, answer, kind)
    assert await asyncio.wait_for(subscribing, 5) == "pending"
    requests = [re.findall(r"<(subscribe|unsubscribe) ", str(stanza)) for stanza in sent]
    assert requests == [["subscribe"], ["unsubscribe"], ["subscribe"]]



async def test_our_subscriptions_are_read_through_the_component_and_a_refusal_is_no_listing() -> None:
    """A service that does not support the request (feature-not-implemented) answers None, so every node
    is renewed; one that is away for now raises, like a timeout."""
    component = started(RecordingSink())
    asking = asyncio.ensure_future(component.subscriptions("pubsub.a.test"))
    await asyncio.sleep(0)
    answer_last(component, OUR_SUBSCRIPTIONS)
    assert (await asyncio.wait_for(asking, 5))["iodef/public/reporting"] == "subscribed"  # type: ignore[index]
    for condition, raises in (("feature-not-implemented", False), ("remote-server-not-found", True)):
        asking = asyncio.ensure_future(component.subscriptions("pubsub.a.test"))
        await asyncio.sleep(0)
        answer_last(component, f"<error type='cancel'><{condition} "
                               "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>", "error")
        if raises:
            with pytest.raises(Exception, match=condition):
                await asyncio.wait_for(asking, 5)
        else:
            assert await asyncio.wait_for(asking, 5) is None

class Unanswered:
    """disco#info that times out; ``meanwhile`` runs while it waits (bytes arriving from the server)."""

    def __init__(self, component: BridgeComponent, meanwhile: Callable[[], None] = lambda: None) -> None:
        self.component, self.meanwhile = component, meanwhile

    async def get_info(self, **_: object) -> None:
        self.meanwhile()
        raise IqTimeout(self.component.Iq())


@pytest.mark.parametrize(("server_sends", "dropped"), [(False, True), (True, False)],
                         ids=["silent link dropped", "busy server kept"])
async def test_an_unanswered_keepalive_drops_only_a_silent_link(monkeypatch: pytest.MonkeyPatch,
                                                                 server_sends: bool, dropped: bool) -> None:
    """A server that answers the probe late but keeps sending is busy, not gone: dropping it would make
    it fetch every node again at the reconnection (SCALING.md, hub and spoke)."""
    component = started(RecordingSink())
    aborted: list[bool] = []
    monkeypatch.setattr(component, "abort", lambda: aborted.append(True))
    sends = (lambda: component.data_received(b" ")) if server_sends else (lambda: None)  # whitespace
    monkeypatch.setitem(component.plugin._plugins, "xep_0030", Unanswered(component, sends))
    await component.probe_link("pubsub.a.test", timeout=10)
    assert bool(aborted) is dropped


class Directory:
    """disco#items and disco#info of a pubsub service: every node listed, each asked about recorded."""

    def __init__(self, types: dict[str, str]) -> None:
        self.types = types  # node -> its pubsub#type
        self.asked: list[str] = []

    async def get_items(self, **_: object) -> dict[str, object]:
        return {"disco_items": {"items": [("pubsub.a.test", node, None) for node in self.types]}}

    async def get_info(self, *, node: str, **_: object) -> dict[str, object]:
        self.asked.append(node)
        form = Form()
        form.add_field(var="pubsub#type", value=self.types[node])
        info = DiscoInfo()
        info.append(form)
        return {"disco_info": info}


async def test_discovery_asks_only_about_nodes_not_known_to_be_iodef(monkeypatch: pytest.MonkeyPatch) -> None:
    """A discovery round costs a peer one disco#items, plus one disco#info per node not yet known."""
    component = started(RecordingSink())
    directory = Directory({"iodef/public/mitigation": NS_V2, "iodef/partner/watch": NS_V1,
                           "chatter": "urn:example:other"})
    monkeypatch.setitem(component.plugin._plugins, "xep_0030", directory)
    assert await component.discover_iodef_nodes("pubsub.a.test") == ["iodef/public/mitigation",
                                                                     "iodef/partner/watch"]
    assert directory.asked == list(directory.types)
    directory.asked = []
    directory.types["iodef/amber/watch"] = NS_V2  # a node the peer created since
    found = await component.discover_iodef_nodes("pubsub.a.test",
                                                 known={"iodef/public/mitigation", "iodef/partner/watch"})
    assert found == ["iodef/public/mitigation", "iodef/partner/watch", "iodef/amber/watch"]
    assert directory.asked == ["chatter", "iodef/amber/watch"]
    del directory.types["iodef/partner/watch"]  # deleted: no longer listed, so no longer found
    assert "iodef/partner/watch" not in await component.discover_iodef_nodes(
        "pubsub.a.test", known={"iodef/partner/watch"})
