"""Relaying: re-publish an item received from one member to this bridge's own nodes, with custody.

The item is verified again with today's trust (a relay vouches only for what it can verify), must be
relayable to the audience of our node under the policy (``policy.check_relayable``), keeps the
originator's signature and gets ours added (``signing.relay``). The result is a ``SignedItem`` like
the publish path makes, ready for the outbox.
"""

from __future__ import annotations

from collections.abc import Collection

from xmppbridge.errors import TooLarge
from xmppbridge.iodef.document import incident_item_id
from xmppbridge.policy.nodes import check_publishable, check_relayable, node_name
from xmppbridge.publish import check_signer, signer_of
from xmppbridge.receive import check_item
from xmppbridge.signing.keys import SigningIdentity
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.verify import TrustStore
from xmppbridge.store.items import SignedItem


def prepare_relay(payload: bytes, *, service: str, node: str, identity: SigningIdentity, trust: TrustStore,
                  prefix: str, audience: Collection[str], allowed: Collection[str], max_bytes: int,
                  schema_mode: str = "strict") -> SignedItem:
    """``payload`` as received on ``node`` of ``service``, relay-signed for our node under ``prefix``.

    ``audience`` are the JIDs that can read our node for the item's restriction (the pubsub whitelist);
    ``allowed`` the members the policy lets need-to-know items go to. Raises ``InputRejected``.
    """
    checked = check_item(trust, service=service, node=node, payload=payload, max_bytes=max_bytes,
                         schema_mode=schema_mode)
    incident = checked.incident
    check_relayable(incident.effective_restriction, audience, allowed)
    check_signer(identity)  # our relay signature must be one the peers accept, as for what we publish
    relayed = relay_sign(payload, identity, max_bytes=max_bytes)
    if len(relayed) > max_bytes:
        raise TooLarge(f"the relayed document for incident {incident.id} is {len(relayed)} bytes, over the "
                       f"limit of {max_bytes}")
    target = node_name(prefix, incident.effective_restriction, incident.purpose)
    check_publishable(target, incident)
    return SignedItem(target, incident_item_id(incident), relayed, incident, checked.document.version,
                      signer_of(identity))
