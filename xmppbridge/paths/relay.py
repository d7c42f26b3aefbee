"""Relaying: re-publish an item received from one member to this bridge's own nodes, with custody.

The item must verify with today's trust (a relay vouches only for what it can verify: a hub's mirror
has just verified it, anything else is verified here), must be relayable to the audience of our node
under the policy (``policy.check_relayable``, ``policy.relaying.check_reach``), keeps the originator's
signature and gets ours added (``signing.relay``). The result is a ``SignedItem`` like
the publish path makes, ready for the outbox, whose signer is still the originator (trust in the item
rests on its signature alone) and whose custody chain ends with our hop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from xmppbridge.errors import InputRejected, TooLarge
from xmppbridge.iodef.document import incident_item_id
from xmppbridge.paths.custody import MemberOf, relayed_chain
from xmppbridge.paths.publish import check_signer
from xmppbridge.paths.receive import Checked, check_item
from xmppbridge.policy.audiences import AUDIENCE_EMPTY, Audience
from xmppbridge.policy.nodes import check_publishable, check_relayable, node_name
from xmppbridge.policy.relaying import check_reach
from xmppbridge.signing.keys import SigningIdentity
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.trust import Signer as TrustedSigner
from xmppbridge.signing.verify import TrustStore
from xmppbridge.store.items import RELAY, Custodian, ItemRef, SignedItem, Signer

RELAY_LOOP = "relay-loop"
RELAY_SOURCE = "relay"  # the quarantine's source of what a hub refused to relay (hub.py)


@dataclass(frozen=True)
class Relayer:
    """What relaying needs of this bridge: who we sign as, whom we trust, where our nodes are."""

    identity: SigningIdentity
    trust: TrustStore
    prefix: str  # our node prefix (pubsub.node_prefix)
    max_bytes: int
    schema_mode: str = "strict"
    member_of: MemberOf | None = None  # names the signers of the custody chain (custody.member_names)


@dataclass(frozen=True)
class Route:
    """Who would read what we relay: ``audience`` gives the readers of one of our nodes (the pubsub
    whitelist, ``Config.node_audience``), ``allowed`` the bridges the relay rule lets read what it relays
    (``RelayRule.to_bridges``): none outside it may read a node we relay to, public ones aside."""

    audience: Callable[[str], Audience]
    allowed: Collection[str]


def prepare_relay(ref: ItemRef, payload: bytes, relayer: Relayer, route: Route, *,
                  checked: Checked | None = None, now: datetime | None = None) -> SignedItem:
    """``payload`` as received as ``ref``, relay-signed for our node of its restriction and purpose.
    ``checked``: what the receive path made of exactly this payload just now, with the same trust (the
    hub's mirror), so that it is not verified twice; else it is checked here. Raises ``InputRejected``
    (``relay-refused``, ``relay-loop``, ``audience-empty``, or why the item does not verify)."""
    if checked is None:
        checked = check_item(relayer.trust, service=ref.service, node=ref.node, payload=payload,
                             max_bytes=relayer.max_bytes, schema_mode=relayer.schema_mode)
    incident, verified, identity = checked.incident, checked.verified, relayer.identity
    if any(signer.fingerprint == identity.fingerprint for signer in verified.chain):
        # It has been through us already (a spoke that is a hub too, say): relaying it again would
        # send it round for ever.
        raise InputRejected(f"incident {incident.id} already carries our signature; not relaying it again",
                            reason=RELAY_LOOP)
    target = node_name(relayer.prefix, incident.effective_restriction, incident.purpose)
    audience = route.audience(target)
    check_relayable(incident.effective_restriction, audience.bridges, route.allowed)  # private: never
    check_reach(incident.effective_restriction, audience.bridges, route.allowed)
    if audience.empty:
        raise InputRejected(f"no member may read {target} (audiences:), so there is nobody to relay it to",
                            reason=AUDIENCE_EMPTY)
    check_signer(identity)  # our relay signature must be one the peers accept, as for what we publish
    relayed = relay_sign(payload, identity, max_bytes=relayer.max_bytes)
    if len(relayed) > relayer.max_bytes:
        raise TooLarge(f"the relayed document for incident {incident.id} is {len(relayed)} bytes, over the "
                       f"limit of {relayer.max_bytes}")
    check_publishable(target, incident)
    name = relayer.member_of(TrustedSigner(identity.certificate, "pinned")) if relayer.member_of else ""
    ours = Custodian(RELAY, identity.subject, identity.fingerprint, now or datetime.now(UTC), name)
    chain = relayed_chain(verified, ours, stated=incident.published_time, member_of=relayer.member_of)
    originator = verified.originator
    return SignedItem(target, incident_item_id(incident), relayed, incident, checked.document.version,
                      Signer(originator.subject, originator.fingerprint), chain)
