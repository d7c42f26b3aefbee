"""The XEP-0060 forms of the ``authorize`` access model (RFC 8600 §8.3.4), read and written as XML.

- §8.6: a pubsub service asks a node's owner to approve a subscription with a message carrying a
  ``pubsub#subscribe_authorization`` data form (``pubsub#node``, ``pubsub#subscriber_jid``, optionally
  ``pubsub#subid``); the owner answers with the same form submitted, ``pubsub#allow`` true or false.
- §8.7: the owner asks for the requests still pending with the ``pubsub#get-pending`` ad-hoc command;
  the service then sends the §8.6 message again for each.

ejabberd 23.01 sends the §8.6 form without a subid, and resends it on get-pending; a request whose owner
was offline is therefore not lost as long as the bridge asks for pending requests when it (re)connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from xmppbridge.jids import InvalidJID, service_key
from xmppbridge.xmpp.stanzas import MESSAGE

DATA_NS = "jabber:x:data"
AUTHORIZATION_FORM = "http://jabber.org/protocol/pubsub#subscribe_authorization"
GET_PENDING = "http://jabber.org/protocol/pubsub#get-pending"
AUTHORIZE_FEATURE = "http://jabber.org/protocol/pubsub#access-authorize"  # disco#info, XEP-0060 §6.1.4
UNSUPPORTED = ("approval needs a server with pubsub#access-authorize, such as ejabberd; Prosody refuses "
               "subscription requests from bridges outside a node's audience")
_X = f"{{{DATA_NS}}}x"
_FIELD = f"{{{DATA_NS}}}field"
_VALUE = f"{{{DATA_NS}}}value"


@dataclass(frozen=True)
class AuthorizationRequest:
    service: str  # the pubsub service that asks (jids.service_key form)
    node: str
    subscriber: str  # bare JID, lower case
    subid: str | None


def form_fields(form: ET.Element) -> dict[str, str]:
    """A data form's fields, var -> first value (the §8.6 form has single-valued fields only)."""
    fields = {}
    for field in form.iter(_FIELD):
        value = field.find(_VALUE)
        fields[field.get("var", "")] = (value.text or "").strip() if value is not None else ""
    return fields


def authorization_request(message: ET.Element) -> AuthorizationRequest | None:
    """The §8.6 request a message carries; None for any other message, or one missing a field."""
    if message.tag != MESSAGE or message.get("type") == "error":
        return None
    for form in message.findall(_X):  # a direct child: no walk through a large message
        if form.get("type") != "form":
            continue
        fields = form_fields(form)
        if fields.get("FORM_TYPE") != AUTHORIZATION_FORM:
            continue
        node, subscriber = fields.get("pubsub#node"), fields.get("pubsub#subscriber_jid")
        try:
            service = service_key(message.get("from") or "")
            subscriber_jid = service_key(subscriber or "").lower()  # as audiences spell bridges
        except InvalidJID:
            return None
        if not node:
            return None
        return AuthorizationRequest(service, node, subscriber_jid, fields.get("pubsub#subid") or None)
    return None


def authorization_answer(owner: str, request: AuthorizationRequest, allow: bool) -> str:
    """The owner's §8.6 answer: the form submitted back to the service with ``pubsub#allow``."""
    fields = [("FORM_TYPE", AUTHORIZATION_FORM), ("pubsub#node", request.node),
              ("pubsub#subscriber_jid", request.subscriber), ("pubsub#allow", "true" if allow else "false")]
    if request.subid:
        fields.append(("pubsub#subid", request.subid))
    body = "".join(f"<field var={quoteattr(var)}><value>{escape(value)}</value></field>"
                   for var, value in fields)
    return (f"<message from={quoteattr(owner)} to={quoteattr(request.service)}>"
            f"<x xmlns='{DATA_NS}' type='submit'>{body}</x></message>")
