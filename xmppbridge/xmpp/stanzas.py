"""The stanzas the bridge receives at volume, read straight from the element tree of the stream parser.

Event notifications (XEP-0060 §7.1.2.1) and the answers to the bridge's own pubsub IQs are nearly all
the traffic. slixmpp would build a stanza object for each and match it against every registered handler
(two dozen), which cost the receiving bridge about as much as verifying the item (BENCHMARKS.md §3).
These readers take what the bridge needs from the XML; every other stanza goes through slixmpp.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree as ET

from xmppbridge.jids import InvalidJID, service_key

STREAM_NS = "jabber:component:accept"
PUBSUB_NS = "http://jabber.org/protocol/pubsub"
EVENT_NS = "http://jabber.org/protocol/pubsub#event"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

MESSAGE = f"{{{STREAM_NS}}}message"
IQ = f"{{{STREAM_NS}}}iq"
_ITEMS = f"{{{EVENT_NS}}}event/{{{EVENT_NS}}}items"
_ITEM = f"{{{EVENT_NS}}}item"
_RETRACT = f"{{{EVENT_NS}}}retract"
_TEXT = f"{{{STANZAS_NS}}}text"
_SUBSCRIPTION = f"{{{PUBSUB_NS}}}pubsub/{{{PUBSUB_NS}}}subscriptions/{{{PUBSUB_NS}}}subscription"
# How far along a subscription is (XEP-0060 §4.1.2): where a node lists several of ours (subids), the
# furthest one counts.
_PROGRESS = {"none": 0, "pending": 1, "unconfigured": 2, "subscribed": 3}


@dataclass(frozen=True)
class Published:
    item_id: str
    payload: ET.Element | None  # the item's payload element; None for a notification without payload


@dataclass(frozen=True)
class Retracted:
    item_id: str


@dataclass(frozen=True)
class Notification:
    service: str  # the sender's bare JID
    node: str
    changes: tuple[Published | Retracted, ...]  # in the order the notification lists them


@dataclass(frozen=True)
class StanzaError:
    condition: str  # e.g. "item-not-found"; "undefined-condition" when the error names none
    text: str


def notification(xml: ET.Element) -> Notification | None:
    """The items and retractions of an event notification; None for any other stanza.

    Every item counts: a notification may carry several (XEP-0060 §7.1.2.1, and retractions beside
    publications), where slixmpp's ``pubsub_publish`` event hands each handler the first one each time.
    A notification is never anything else for the bridge, even with a body for people's clients: it
    must not reach the chat shell as a command from the pubsub service.
    """
    if xml.tag != MESSAGE or xml.get("type") == "error":
        return None
    items = xml.find(_ITEMS)
    service = bare(xml.get("from"))
    if items is None or service is None:
        return None
    changes: list[Published | Retracted] = []
    for child in items:
        if child.tag == _ITEM:
            changes.append(Published(child.get("id", ""), child[0] if len(child) else None))
        elif child.tag == _RETRACT:
            changes.append(Retracted(child.get("id", "")))
    return Notification(service, items.get("node", ""), tuple(changes))


def error_of(iq: ET.Element) -> StanzaError | None:
    """The error of an IQ answer, None for a result. The ``<error>`` element is looked up by local name:
    on a component stream it arrives in the stream's namespace (the reason for ``fix_error_ns``)."""
    if iq.get("type") != "error":
        return None
    error = next((child for child in iq if child.tag.rpartition("}")[2] == "error"), None)
    if error is None:
        return StanzaError("undefined-condition", "")
    condition = next((child.tag.rpartition("}")[2] for child in error
                      if child.tag.startswith(f"{{{STANZAS_NS}}}") and child.tag != _TEXT),
                     "undefined-condition")
    return StanzaError(condition, (error.findtext(_TEXT) or "").strip())


def subscriptions_of(answer: ET.Element, subscriber: str) -> dict[str, str]:
    """Per node, the state of ``subscriber``'s subscription, from the answer to a request for all our
    subscriptions on a service (XEP-0060 §5.6). Entries for any other JID are passed over; a node the
    answer does not name has no subscription of ours."""
    ours = bare(subscriber)
    states: dict[str, str] = {}
    for entry in answer.iterfind(_SUBSCRIPTION):
        node, state = entry.get("node"), entry.get("subscription", "none")
        if not node or bare(entry.get("jid")) != ours:
            continue
        if _PROGRESS.get(state, 0) >= _PROGRESS.get(states.get(node, "none"), 0):
            states[node] = state
    return states


def bare(jid: str | None) -> str | None:
    """The bare form of a stanza's ``from``; None when missing or not a JID."""
    if not jid:
        return None
    try:
        return service_key(jid)  # the form subscriptions and trust rules are keyed by
    except InvalidJID:
        return None
