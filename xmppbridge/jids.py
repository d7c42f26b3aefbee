"""Services as keys: one spelling per pubsub service, however a configuration or a stanza wrote it.

A configuration may write ``PubSub.B.Test`` where the server's stanzas come from ``pubsub.b.test``. What
is keyed by service (stored entries, the subscriptions, per-subscription signer rules) must use one form,
or the same peer ends up under two keys and a rule written for one spelling misses the other.
"""

from __future__ import annotations

from slixmpp.jid import JID, InvalidJID

__all__ = ["InvalidJID", "bare_jid", "service_key"]


def service_key(text: str) -> str:
    """The normalised bare JID of ``text`` (RFC 7622: the domain lower-cased, a resource dropped).
    Raises ``InvalidJID`` for text that is not a JID."""
    return JID(text).bare


def bare_jid(jid: str) -> str:
    """``jid`` without its resource, lower-cased: how the policy compares the JIDs of people, rooms and
    bridges (cheap, for every stanza; ``service_key`` also validates)."""
    return jid.partition("/")[0].lower()
