"""The receive path's core: an item from a remote node -> a verified mirror entry, or a quarantined one.

Order matters: the signature is checked first and only signxml's ``signed_xml`` is used afterwards, so
nothing outside the signature can influence classification (no signature wrapping). Then the signers
must be allowed to say what the document says (``TrustStore.authorize``: the subscription's signers,
the originator's IncidentID domains), and the node it came from must not be wider than its marking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from xmppbridge.errors import InputRejected, TooLarge
from xmppbridge.iodef.document import document_from_root
from xmppbridge.iodef.markings import is_wider
from xmppbridge.iodef.model import Document, Incident
from xmppbridge.paths.custody import MemberOf, received_chain
from xmppbridge.policy.nodes import check_publishable, check_shareable, node_restriction
from xmppbridge.policy.sources import authorize_source
from xmppbridge.signing.verify import TrustStore, Verified, verify_document
from xmppbridge.store.contracts import Entries, Quarantine
from xmppbridge.store.items import ItemRef, Refused, SignedItem, Signer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    """An item that passed every check: what the originator signed, classified."""

    verified: Verified
    document: Document
    incident: Incident  # the representative Incident (narrowest restriction of all)


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    status: str  # "new" | "updated" | "unchanged" when accepted, else the quarantine reason
    message: str = ""
    checked: Checked | None = None  # an accepted item as verified: a hub relays it without verifying again


def check_item(trust: TrustStore, *, service: str, node: str, payload: bytes | None, max_bytes: int,
               schema_mode: str = "strict") -> Checked:
    """Verify, classify and authorise one item without storing anything; raises ``InputRejected``."""
    if payload is None:
        raise InputRejected("the item carries no payload", reason="payload-missing")
    if len(payload) > max_bytes:
        raise TooLarge(f"payload is {len(payload)} bytes, over the limit of {max_bytes}")
    verified = verify_document(payload, trust, max_bytes=max_bytes)
    document = document_from_root(verified.signed_root, schema_mode=schema_mode)
    check_shareable(verified.signed_root)  # TLP:AMBER+STRICT: the sender leaked it; do not spread it
    authorize_source(trust, verified.originator, verified.presenter, [i.id_name for i in document.incidents],
                     service)
    incident = representative(document.incidents)
    if node_restriction(node) is not None:
        # The peer put it on a node readable more widely than the document allows: mirroring it would
        # endorse the leak. Nodes named otherwise (other implementations) say nothing we can check.
        check_publishable(node, incident)
    return Checked(verified, document, incident)


def mirror_item(store: Entries, trust: TrustStore, ref: ItemRef, payload: bytes | None, *, max_bytes: int,
                schema_mode: str = "strict", member_of: MemberOf | None = None) -> str:
    """Check one item and store it as a mirror entry: "new", "updated" or "unchanged". Raises
    ``InputRejected``; quarantining is the caller's business (``receive_item``, quarantine release).

    The entry's signer is the originator, whoever relayed it: what the item says is believed on the
    originator's signature alone. A relayed item also keeps its custody chain (``custody``), whose
    signers ``member_of`` names."""
    return _mirror(store, trust, ref, payload, max_bytes=max_bytes, schema_mode=schema_mode,
                   member_of=member_of)[0]


def _mirror(store: Entries, trust: TrustStore, ref: ItemRef, payload: bytes | None, *, max_bytes: int,
            schema_mode: str, member_of: MemberOf | None) -> tuple[str, Checked]:
    checked = check_item(trust, service=ref.service, node=ref.node, payload=payload, max_bytes=max_bytes,
                         schema_mode=schema_mode)
    assert payload is not None  # check_item refuses a missing payload
    verified = checked.verified
    chain = received_chain(verified, stated=checked.incident.published_time, received=datetime.now(UTC),
                           member_of=member_of)
    signed = SignedItem(ref.node, ref.item_id, payload, checked.incident, checked.document.version,
                        Signer(verified.signer_subject, verified.signer_fingerprint), chain)
    status = store.upsert_entry(ref.service, signed, origin="remote")
    if verified.relays:
        log.info("item %s: created by %s, relayed by %s", ref, verified.signer_subject,
                 " -> ".join(s.subject for s in verified.relays))
    return status, checked


class Receiving(Entries, Quarantine, Protocol):
    """What the receive path writes: entries, and the quarantine for what it refuses."""


def receive_item(store: Receiving, trust: TrustStore, ref: ItemRef, payload: bytes | None, *, max_bytes: int,
                 schema_mode: str = "strict", source: str = "xmpp",
                 member_of: MemberOf | None = None) -> Outcome:
    """Verify and mirror one item. Never raises for bad input: refused items go to the quarantine with
    their source, time, reason and raw bytes (``xmppbridge quarantine list``)."""
    try:
        status, checked = _mirror(store, trust, ref, payload, max_bytes=max_bytes, schema_mode=schema_mode,
                                  member_of=member_of)
    except InputRejected as exc:
        store.add_reject(Refused(source, exc.reason, message_of(exc), payload or b"", ref))
        log.warning("quarantined item %s: %s: %s", ref, exc.reason, exc)
        return Outcome(False, exc.reason, str(exc))
    log.info("mirrored item %s (%s)", ref, status)
    return Outcome(True, status, checked=checked)


def representative(incidents: list[Incident]) -> Incident:
    """One Incident stands for the item; its restriction is the narrowest of all of them, so an entry is
    never shown more widely than its most restricted part (RFC 7970 §3.3.1)."""
    narrowest = incidents[0].effective_restriction
    for incident in incidents[1:]:
        if is_wider(narrowest, incident.effective_restriction):
            narrowest = incident.effective_restriction
    return replace(incidents[0], restriction=narrowest, narrowest_restriction=narrowest)


def message_of(exc: InputRejected) -> str:
    """The operator's message: the error and up to 20 details (e.g. schema errors)."""
    if not exc.details:
        return str(exc)
    return str(exc) + "\n" + "\n".join(exc.details[:20])
