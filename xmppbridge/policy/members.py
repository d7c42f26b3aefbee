"""The member registry: who is in the consortium, how to reach them, what they speak for, how they sign.

One entry per member; everything else the bridge needs about a peer is derived from it
(``policy.memberconfig``): the trust anchors, the per-source signer and domain rules, the subscriptions
and the audiences' JIDs. The same registry file can be shared by every member: a bridge finds its own
entry by its component JID, and treats every other entry as a peer.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from xmppbridge.jids import bare_jid


@dataclass(frozen=True)
class Member:
    name: str  # what audiences, rights and logs call it, e.g. cert-b
    bridge: str  # its bridge's component JID (normalised): the JID affiliated with our nodes
    pubsub: str  # its pubsub service (normalised), where its items come from
    domains: tuple[str, ...]  # the IncidentID domains it speaks for
    certificates: tuple[x509.Certificate, ...] = ()  # pinned signing certificates (several: rotation)
    authorities: tuple[x509.Certificate, ...] = ()  # or the CA that issues its signing certificates
    follow: bool = True  # subscribe to its service
    nodes: tuple[str, ...] | None = None  # which of its nodes; None: discover every IODEF node
    max_items: int = 5000  # its nodes' max_items (config.Subscription.max_items)


@dataclass(frozen=True)
class Registry:
    members: tuple[Member, ...] = ()
    own: str | None = None  # the name of our own entry, found by our component JID

    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def peers(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.name != self.own)

    def get(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def by_bridge(self, jid: str) -> Member | None:
        bare = bare_jid(jid)
        return next((m for m in self.members if m.bridge == bare), None)

    def by_service(self, service: str) -> Member | None:
        return next((m for m in self.members if m.pubsub == service), None)


EMPTY = Registry()
