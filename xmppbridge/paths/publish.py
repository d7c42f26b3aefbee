"""The publish path's core: bytes from a user -> signed wire-form items, each with its node and id.

Shared by every entry point (CLI, AtomPub, watched folder). Nothing here touches the network: the
result goes into the store's outbox, which the XMPP shell drains.

What every peer would refuse is refused here, with the peers' reason, rather than published and then
quarantined everywhere: a signing certificate a receiver refuses (``signing.keys``), an IncidentID name
outside the domains we speak for (``domain-not-allowed``, the receivers' rule in ``signing.trust``), a
node readable more widely than the document's marking (``policy.nodes``), a category no member may
read (``policy.audiences``), a document marked TLP:AMBER+STRICT (the originator's organisation only).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from xmppbridge.errors import InputRejected, SignerUnusable, TooLarge
from xmppbridge.iodef.document import incident_item_id, read_document, split_document
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.iodef.model import NS_V1, NS_V2, Incident
from xmppbridge.policy.audiences import AUDIENCE_EMPTY, Audiences
from xmppbridge.policy.nodes import check_publishable, check_shareable, node_name
from xmppbridge.signing.keys import (
    SIGNER_FIXES,
    SigningIdentity,
    as_utc,
    load_identity,
    signing_certificate_problem,
)
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import DOMAIN_NOT_ALLOWED, certificate_domains, foreign_name
from xmppbridge.store import OutboxItem
from xmppbridge.store.contracts import Outbox
from xmppbridge.store.items import SignedItem, Signer

if TYPE_CHECKING:
    from xmppbridge.config.settings import Config


def prepare(data: bytes, *, prefix: str, identity: SigningIdentity, max_bytes: int,
            schema_mode: str = "strict", domains: Sequence[str] = (), audiences: Audiences | None = None,
            now: datetime.datetime | None = None) -> list[SignedItem]:
    """Validate, split per category, sign. Raises ``InputRejected`` with the reason for the user
    (``SignerUnusable`` when the fault is our signing certificate's at ``now``, default the current time).

    ``domains`` are the IncidentID domains we speak for besides the certificate's (``signing.domains``);
    ``audiences`` who may read each category (``Config.audiences``; None only where no node is involved).
    """
    check_signer(identity, now)
    document = read_document(data, max_bytes=max_bytes, schema_mode=schema_mode)
    check_speaks_for(identity, domains, [incident.id_name for incident in document.incidents])
    prepared = []
    for piece in split_document(document):
        check_shareable(piece.root)
        # Stored and shown under the restriction it is routed on (see Incident.effective_restriction).
        first = piece.incidents[0]
        incident = replace(first, restriction=first.effective_restriction)
        if audiences is not None:
            check_audience(audiences, incident)
        payload = sign_document(piece.root, identity)
        if len(payload) > max_bytes:
            raise TooLarge(f"the signed document for incident {incident.id} is {len(payload)} bytes, over "
                           f"the limit of {max_bytes}")
        node = node_name(prefix, incident.restriction, incident.purpose)
        check_publishable(node, incident)  # never publish wider than the document's marking
        prepared.append(SignedItem(node, incident_item_id(incident), payload, incident, piece.version,
                                   signer_of(identity)))
    return prepared


def signer_of(identity: SigningIdentity) -> Signer:
    return Signer(identity.subject, identity.fingerprint)


def check_audience(audiences: Audiences, incident: Incident) -> None:
    """Refuse an incident nobody may read: a node without members would hold it for no one, and the
    default audience is nobody beyond what ``audiences:`` names."""
    purpose = canonical_purpose(incident.purpose)
    if audiences.of(incident.restriction, purpose).empty:
        raise InputRejected(
            f"incident {incident.id_name}:{incident.id} is {incident.restriction}/{purpose} and no member "
            f"may read that: name its readers in audiences ({incident.restriction}: [...] or "
            f"{incident.restriction}/{purpose}: [...])", reason=AUDIENCE_EMPTY)


def check_signer(identity: SigningIdentity, now: datetime.datetime | None = None) -> None:
    """Refuse to sign with a certificate every receiver refuses. The bridge checked it at start-up
    (``load_identity``), but it may have expired while the bridge kept running."""
    problem = signing_certificate_problem(identity.certificate, as_utc(now))
    if problem:
        raise SignerUnusable(
            f"our signing certificate {identity.subject} {problem.text}, so every peer would refuse the "
            f"document as {problem.reason}; {SIGNER_FIXES[problem.reason]}", reason=problem.reason)


def speaks_for(identity: SigningIdentity, domains: Sequence[str]) -> tuple[str, ...]:
    """The IncidentID domains our documents may name: the certificate's subjectAltName dNSNames, which
    every peer accepts, plus ``signing.domains``, which peers bind to our certificate in ``trust.domains``."""
    return tuple(dict.fromkeys((*certificate_domains(identity.certificate), *domains)))


def check_speaks_for(identity: SigningIdentity, domains: Sequence[str], id_names: Iterable[str]) -> None:
    """Refuse IncidentID names outside ``speaks_for``: receivers quarantine them as domain-not-allowed
    (``policy.sources.authorize_source``, the same ``foreign_name`` decision)."""
    ours = speaks_for(identity, domains)
    name = foreign_name(id_names, ours)
    if name is None:
        return
    speaks = (f"speaks for {', '.join(ours)} (the subjectAltName dNSNames of its signing certificate and "
              "signing.domains)" if ours else "speaks for no domain (its signing certificate has no "
              "subjectAltName dNSName and signing.domains is not set)")
    raise InputRejected(
        f"IncidentID name {name!r} is outside the domains of this member, which {speaks}, so every peer "
        f"would quarantine the document as {DOMAIN_NOT_ALLOWED}; use an IncidentID name under one of its "
        f"domains or, if this member publishes for {name}, add that domain to signing.domains and ask the "
        "peers to bind it to this signer in their trust.domains", reason=DOMAIN_NOT_ALLOWED)


def payload_namespace(payload: bytes) -> str:
    """The IODEF namespace of a wire-form payload (its root declares it first, see wireform)."""
    return NS_V2 if NS_V2.encode() in payload[:160] else NS_V1


@dataclass(frozen=True)
class Accepted:
    outbox_id: int
    item: SignedItem


class Publisher:
    """Accepts documents for publishing and tells the caller how each one went.

    ``submit`` commits every piece to the outbox before returning, so an accepted document is
    published even if the caller goes away; ``wait``/``wait_async`` report the outcome once the
    bridge's outbox drain has published (or failed) it. Callers that must look at the pieces before
    committing to them (AtomPub checks the collection and conflicts) call ``prepare`` and ``enqueue``.
    ``service`` is the pubsub service the bridge publishes to, where the entries will appear;
    ``domains`` the IncidentID domains it publishes for besides its certificate's (``signing.domains``).
    """

    POLL = 0.1

    def __init__(self, store: Outbox, identity: SigningIdentity, *, prefix: str, max_bytes: int,
                 schema_mode: str = "strict", service: str | None = None,
                 domains: Sequence[str] = (), audiences: Audiences | None = None) -> None:
        self.store, self.identity = store, identity
        self.prefix, self.max_bytes, self.schema_mode = prefix, max_bytes, schema_mode
        self.service, self.domains, self.audiences = service, tuple(domains), audiences

    @classmethod
    def for_config(cls, store: Outbox, config: Config) -> Publisher:
        """The publisher of a bridge: its key, node prefix, limits, domains and audiences."""
        return cls(store, load_identity(config.signing_key, config.signing_cert), prefix=config.node_prefix,
                   max_bytes=config.max_document_bytes, schema_mode=config.schema_mode,
                   service=config.pubsub_service, domains=config.signing_domains, audiences=config.audiences)

    def prepare(self, data: bytes) -> list[SignedItem]:
        """Validate, split and sign, committing nothing. Raises ``InputRejected``."""
        return prepare(data, prefix=self.prefix, identity=self.identity, max_bytes=self.max_bytes,
                       schema_mode=self.schema_mode, domains=self.domains, audiences=self.audiences)

    def enqueue(self, items: Sequence[SignedItem], *, source: str) -> list[Accepted]:
        return [Accepted(self.store.enqueue(item, source=source), item) for item in items]

    def submit(self, data: bytes, *, source: str) -> list[Accepted]:
        return self.enqueue(self.prepare(data), source=source)

    def retract(self, *, node: str, item_id: str, incident: Incident, version: str, source: str) -> int:
        """Queue the retraction of one of our items; the entry is marked deleted once it is done."""
        return self.store.enqueue(SignedItem(node, item_id, b"", incident, version), source=source,
                                  action="retract")

    def outcome(self, outbox_id: int) -> OutboxItem | None:
        """The outbox item once it is published or failed; None while still pending."""
        item = self.store.outbox_item(outbox_id)
        if item is None:
            raise LookupError(f"outbox item {outbox_id} does not exist")
        return None if item.status == "pending" else item

    def wait(self, outbox_id: int, timeout: float) -> OutboxItem | None:
        deadline = time.monotonic() + timeout
        while (item := self.outcome(outbox_id)) is None and time.monotonic() < deadline:
            time.sleep(self.POLL)
        return item

    async def wait_async(self, outbox_id: int, timeout: float) -> OutboxItem | None:
        deadline = time.monotonic() + timeout
        while (item := self.outcome(outbox_id)) is None and time.monotonic() < deadline:
            await asyncio.sleep(self.POLL)
        return item
