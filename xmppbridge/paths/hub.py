"""Hub and spoke, the bridge's end: relay what the mirror stored, and drop our own items coming back.

A coordinator's mirror hands every item it has just stored (new or changed, never the same bytes again)
to ``Hub.relay``: if a ``relay:`` rule selects it, it is relay-signed (``relay.prepare_relay``) and queued
in the outbox for our own node. The mirror stores the item and the hub queues it in the same store batch
(one transaction per notification stanza or fetch), so a crash loses neither or both, and the outbox
publishes it after a restart. A redelivery or a catch-up refetch brings the same bytes, which the mirror
skips before it gets here, so nothing is relayed twice. A retraction by the originator retracts our
relayed copy (``Hub.retract``). Items a rule selects and the policy refuses
(private, an audience wider than the rule's ``to``, ...) are kept in the quarantine with their reason
(source ``relay``), as the receive path keeps what it refuses.

A spoke follows the hub only, and its own items come back from there, relayed: ``own_echo`` recognises
them so that the mirror passes them over instead of quarantining them as signed by a stranger (a bridge
does not trust its own certificate as a peer's). Hubs that relay to each other (a tree of hubs, each with
spokes of its own) get their own relays back the same way: hub 1 relays a spoke's item, hub 2 relays it
on to its spokes on a node hub 1 follows too, and hub 1 receives it again with its own relay signature.
It already holds that incident (from the spoke, and its relayed copy), so the echo is passed over too.
Otherwise every item would end in its quarantine, as ``unknown-signer``: its own relay signature is by a
certificate it does not trust as a peer's.

Hubs that follow each other in a ring or a mesh get one document by more than one way: hub 3 follows
hubs 1 and 2, gets a spoke's item from hub 1 relayed by 1, then from hub 2 relayed by 1 and 2. The
second is new bytes (another custody chain), so the mirror stores it, and relaying it too would send
every spoke of hub 3 the same document again as a second revision. So a document is relayed once: the
first way it comes decides, and any later way that brings the same originator's same signed content
(``Layout.originator_digest``) is passed over (``Hub.came_before``), as is a revision an update has
superseded, brought late by a way that lags. An update by the originator is new content, and is relayed;
one whose signed content were byte for byte an earlier revision's would not be (its digest is that
revision's): an update that changes nothing it reports, not even a time.
"""

from __future__ import annotations

import logging
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from lxml import etree

from xmppbridge.config.settings import Config
from xmppbridge.errors import InputRejected
from xmppbridge.iodef.document import incident_item_id
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.iodef.uuids import incident_uuid
from xmppbridge.paths.custody import member_names
from xmppbridge.paths.receive import Checked, message_of
from xmppbridge.paths.relay import RELAY_SOURCE, Relayer, Route, prepare_relay
from xmppbridge.policy.nodes import node_name
from xmppbridge.signing.keys import SigningIdentity, fingerprint
from xmppbridge.signing.shape import signature_layout
from xmppbridge.signing.verify import embedded_certificates
from xmppbridge.store.contracts import Entries, Outbox, Quarantine
from xmppbridge.store.entries import Entry
from xmppbridge.store.items import ItemRef, Refused, SignedItem
from xmppbridge.store.outbox import RETRACT

log = logging.getLogger(__name__)


class Relaying(Entries, Outbox, Quarantine, Protocol):
    """What the hub reads and writes: the entry just mirrored, the other entries of its incident, the
    outbox, the quarantine."""


class Hub:
    def __init__(self, config: Config, store: Relaying, identity: SigningIdentity) -> None:
        self.config, self.store = config, store  # config: swapped on reload, for the live audiences
        self.relayer = Relayer(identity, config.trust, config.node_prefix, config.max_document_bytes,
                               config.schema_mode, member_names(config.registry))

    def relay(self, ref: ItemRef, payload: bytes, checked: Checked) -> None:
        """Relay ``payload``, just mirrored as ``ref`` (``checked``: as the receive path verified it), if a
        rule selects it. Never raises for the item."""
        incident = checked.incident
        rule = self.config.relay.rule_for(ref.service, ref.node, incident.effective_restriction,
                                          incident.purpose)
        if rule is None:
            return
        first = self.came_before(ref, payload, checked)
        if first is not None:
            log.info("not relaying item %s: the same document by its originator came first from %s as "
                     "item %s, and was relayed (or refused) then", ref, first.service, first.item_id)
            return
        try:
            item = prepare_relay(ref, payload, self.relayer,
                                 Route(audience=self.config.node_audience, allowed=rule.to_bridges),
                                 checked=checked)
        except InputRejected as exc:
            self.store.add_reject(Refused(RELAY_SOURCE, exc.reason, message_of(exc), payload, ref))
            log.warning("not relaying item %s: %s: %s", ref, exc.reason, exc)
            return
        self.store.enqueue(item, source=f"{RELAY_SOURCE}:{ref.service}")
        log.info("relaying item %s to %s as %s", ref, item.node, item.item_id)

    def came_before(self, ref: ItemRef, payload: bytes, checked: Checked) -> Entry | None:
        """Another live entry than ``ref``, mirrored from a source a rule selects, that held what
        ``payload`` holds, as its originator signed it, and so was relayed (or refused) then; else None.
        Held now, or before an update superseded it: a way that lags brings an older document after a
        newer one, and relaying it would take the spokes back a revision.

        One indexed read while ``ref``'s entry is the incident's only one beside our relayed copy (each
        item in a tree of hubs, and each update there); the entries are read, and documents parsed, only
        when the incident came by another way too (a ring's)."""
        incident, originator = checked.incident, checked.verified.originator.fingerprint
        holders = self.store.live_holders(str(incident_uuid(incident.id_name, incident.id)),
                                          other_than=self.config.pubsub_service)
        if len(holders) < 2:
            return None  # ``ref``'s own entry alone, just stored
        others = [entry for entry in map(self.store.entry, holders)
                  if entry is not None and entry.signer_fingerprint == originator
                  and (entry.service, entry.node, entry.item_id) != (ref.service, ref.node, ref.item_id)
                  and self._selected(entry)]
        digest = originator_digest(payload) if others else ""
        if not digest:
            return None
        current = next((entry for entry in others if originator_digest(entry.xml) == digest), None)
        return current or next((entry for entry in others
                                if any(originator_digest(old.xml) == digest
                                       for old in self.store.entry_versions(entry.id))), None)

    def _selected(self, entry: Entry) -> bool:
        return self.config.relay.rule_for(entry.service, entry.node, entry.incident.effective_restriction,
                                          entry.incident.purpose) is not None

    def retract(self, ref: ItemRef) -> None:
        """The originator retracted ``ref`` (the mirror just marked it deleted): retract our relayed copy
        too, if we published one, so that the spokes drop it as the hub did."""
        entry = self.store.find_entry(ref.service, ref.node, ref.item_id)
        if entry is None:
            return
        node = node_name(self.config.node_prefix, entry.restriction, entry.incident.purpose)
        ours = self.store.find_entry(self.config.pubsub_service, node, incident_item_id(entry.incident))
        # Only a copy we relayed of this very item: one whose custody starts with its originator.
        if ours is None or ours.deleted or not ours.custody or \
                ours.custody[0].fingerprint != entry.signer_fingerprint:
            return
        self.store.enqueue(SignedItem(ours.node, ours.item_id, b"", ours.incident, ours.version),
                           source=f"{RELAY_SOURCE}:{ref.service}", action=RETRACT)
        log.info("retracting our relayed copy %s of %s: retracted by its originator", ours.item_id, ref)


def originator_digest(payload: bytes) -> str:
    """``Layout.originator_digest`` of a document the receive path accepted ("" if it no longer parses)."""
    try:
        root = parse_untrusted(payload)
        return signature_layout(root, etree.QName(root).namespace or "").originator_digest
    except InputRejected:
        return ""


class OwnEcho:
    """Recognises documents we originated or relayed, coming back to us through a hub: signed (as their
    originator or as one of their relays) with our key, or with a key we signed with before a reload
    switched keys (``also``), which a hub may still be relaying."""

    def __init__(self, identity: SigningIdentity) -> None:
        self._markers: dict[str, bytes] = {}  # our certificates' fingerprints -> their markers
        self.also(identity)

    def also(self, identity: SigningIdentity) -> None:
        # The last full line of the certificate's PEM body, as our signatures embed it (signing.sign):
        # searching the bytes for it is cheap, and only a document that has it is parsed.
        lines = identity.certificate.public_bytes(serialization.Encoding.PEM).split(b"\n")
        if len(lines) > 4:
            self._markers[identity.fingerprint] = lines[-4]

    def __call__(self, payload: bytes | None) -> bool:
        if not payload or not any(marker in payload for marker in self._markers.values()):
            return False
        try:
            root = parse_untrusted(payload)
            layout = signature_layout(root, etree.QName(root).namespace or "")
            signers = [embedded_certificates(signature)[0]
                       for signature in (layout.originator, *layout.relays)]
        except InputRejected:
            return False  # not ours after all: the receive path says what is wrong with it
        # Unverified, and only used to pass an item over: a forgery that names our certificate gains
        # nothing it could not get by not being sent.
        return any(fingerprint(certificate) in self._markers for certificate in signers)
