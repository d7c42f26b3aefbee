"""Where we accept items from, and what each source's signers may say: the receive side of the policy.

An item is believed when (1) it came from a service we follow (``Sources.follows``), (2) its signature
holds under the trust store (``signing.trust``), and (3) its signers may say it from there
(``authorize_source``): the presenter is one the source's rule accepts, and the originator speaks for
every IncidentID domain in it. The registry (``policy.members``) feeds all three: ``with_members``
turns its entries into pinned certificates, CAs, domain bindings and per-source rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from types import MappingProxyType

from xmppbridge.errors import SignatureRejected
from xmppbridge.jids import InvalidJID, service_key
from xmppbridge.policy.members import Member, Registry
from xmppbridge.signing.keys import fingerprint
from xmppbridge.signing.trust import (
    DOMAIN_NOT_ALLOWED,
    Signer,
    SignerRef,
    SourceRule,
    TrustStore,
    foreign_name,
)


@dataclass(frozen=True)
class Sources:
    """The pubsub services we subscribe to (normalised, ``jids.service_key``)."""

    services: frozenset[str] = frozenset()

    def follows(self, service: str) -> bool:
        """``service`` is one we follow, however its JID is spelled (records stored by earlier versions
        may carry a configuration's spelling)."""
        try:
            return service_key(service) in self.services
        except InvalidJID:
            return False


def authorize_source(trust: TrustStore, originator: Signer, presenter: Signer, id_names: Iterable[str],
                     source: str | None) -> None:
    """Refuse what the signers may not say here. ``presenter`` is the last signer of the chain (the relay
    that handed the item to ``source``, else the originator); the source's ``signers`` apply to it. The
    originator must own every IncidentID name, unless the source's rule allows it."""
    rule = trust.sources.get(source, SourceRule()) if source else SourceRule()
    if rule.signers is not None and not any(ref.matches(presenter.certificate) for ref in rule.signers):
        raise SignatureRejected(
            f"signer {presenter.subject} (SHA-256 {presenter.fingerprint}) is trusted but not one of the "
            f"signers accepted from {source} (its registry entry or subscriptions[].signers)",
            reason="signer-not-allowed")
    bound = trust.bound_domains(originator.certificate)
    name = foreign_name(id_names, bound + rule.allow_domains)
    if name is not None:
        raise SignatureRejected(
            f"IncidentID name {name!r} is not a domain of signer {originator.subject}, who speaks "
            f"for {', '.join(bound) or 'no domain'} (certificate subjectAltName, members[].domains or "
            f"trust.domains); to accept it from {source or 'this source'}, add it to the subscription's "
            "allow_domains", reason=DOMAIN_NOT_ALLOWED)


def with_members(trust: TrustStore, registry: Registry) -> TrustStore:
    """``trust`` plus every peer of the registry: its certificates pinned or its CA trusted, its domains
    bound to them, and a rule that its service presents only its own signers."""
    peers = registry.peers()
    if not peers:
        return trust
    pinned = dict(trust.certificates)
    authorities = list(trust.authorities)
    domains = list(trust.domains)
    sources = dict(trust.sources)
    for member in peers:
        refs = _refs(member)
        pinned.update((fingerprint(c), c) for c in member.certificates)
        authorities.extend(a for a in member.authorities if a not in authorities)
        domains.extend((ref, member.domains) for ref in refs)
        if member.pubsub not in sources:  # an explicit subscriptions[] rule for it wins
            sources[member.pubsub] = SourceRule(signers=refs)
    return replace(trust, certificates=MappingProxyType(pinned), authorities=tuple(authorities),
                   domains=tuple(domains), sources=MappingProxyType(sources))


def _refs(member: Member) -> tuple[SignerRef, ...]:
    # By issuer for a CA member: the chain is validated against the trusted CAs before this matches.
    return (*(SignerRef(f"{member.name} certificate", fingerprint=fingerprint(c))
              for c in member.certificates),
            *(SignerRef(f"issued by {member.name}'s CA", issuer=a.subject) for a in member.authorities))
