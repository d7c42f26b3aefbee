"""The receive path's core: an item from a remote node -> a verified mirror entry, or a kept reject.

Order matters: the signature is checked first and only signxml's ``signed_xml`` is used afterwards,
so nothing outside the signature can influence classification (no signature wrapping).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from xmppbridge.errors import InputRejected, TooLarge
from xmppbridge.iodef.document import document_from_root
from xmppbridge.iodef.model import Incident
from xmppbridge.policy import is_wider
from xmppbridge.signing.verify import TrustStore, verify_document
from xmppbridge.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    status: str  # "new" | "updated" | "unchanged" when accepted, else the reject reason
    message: str = ""


def receive_item(store: Store, trust: TrustStore, *, service: str, node: str, item_id: str,
                 payload: bytes | None, max_bytes: int, schema_mode: str = "strict") -> Outcome:
    """Verify and mirror one item. Never raises for bad input: rejects are stored with their reason."""
    try:
        if payload is None:
            raise InputRejected("the item carries no payload", reason="payload-missing")
        if len(payload) > max_bytes:
            raise TooLarge(f"payload is {len(payload)} bytes, over the limit of {max_bytes}")
        verified = verify_document(payload, trust, max_bytes=max_bytes)
        document = document_from_root(verified.signed_root, schema_mode=schema_mode)
        status = store.upsert_entry(
            service=service, node=node, item_id=item_id, origin="remote",
            incident=_representative(document.incidents), version=document.version, xml=payload,
            signer_subject=verified.signer_subject, signer_fingerprint=verified.signer_fingerprint,
        )
    except InputRejected as exc:
        store.add_reject(source="xmpp", service=service, node=node, item_id=item_id, reason=exc.reason,
                         message=_message(exc), raw=payload or b"")
        log.warning("rejected item %s on %s/%s: %s: %s", item_id, service, node, exc.reason, exc)
        return Outcome(False, exc.reason, str(exc))
    log.info("mirrored item %s from %s/%s (%s)", item_id, service, node, status)
    return Outcome(True, status)


def _representative(incidents: list[Incident]) -> Incident:
    """One Incident stands for the item; its restriction is the narrowest of all of them, so an entry is
    never shown more widely than its most restricted part (DIGEST §5)."""
    narrowest = incidents[0].effective_restriction
    for incident in incidents[1:]:
        if is_wider(narrowest, incident.effective_restriction):
            narrowest = incident.effective_restriction
    return replace(incidents[0], restriction=narrowest, narrowest_restriction=narrowest)


def _message(exc: InputRejected) -> str:
    if not exc.details:
        return str(exc)
    return str(exc) + "\n" + "\n".join(exc.details[:20])
