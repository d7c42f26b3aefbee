"""The custody chain of a relayed document, from what ``verify_document`` reports (``Verified.chain``).

Pure: the receive path stores the chain with the entry, the relay adds its own hop, and the feed, the
HTML view and chat render it. A document that came straight from its originator has no chain (the
entry's signer says it all), so only relayed documents carry one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cryptography import x509

from xmppbridge.policy.members import Registry
from xmppbridge.signing.keys import fingerprint
from xmppbridge.signing.trust import Signer
from xmppbridge.signing.verify import Verified
from xmppbridge.store.items import ORIGINATOR, RELAY, Custodian

MemberOf = Callable[[Signer], str]  # the registry's name for a signer, "" when it is none of them


def received_chain(verified: Verified, *, stated: datetime | None, received: datetime | None,
                   member_of: MemberOf | None = None) -> tuple[Custodian, ...]:
    """The chain of a document as we received it: empty when nobody relayed it. ``stated`` is the time
    the originator's signed document gives (``Incident.published_time``), ``received`` when the last
    relay handed it to us; the relays before it left no time we could know."""
    if not verified.relays:
        return ()
    name = member_of or _nobody
    last = len(verified.relays) - 1
    return (_originator(verified, stated, name),
            *(Custodian(RELAY, relay.subject, relay.fingerprint, received if i == last else None, name(relay))
              for i, relay in enumerate(verified.relays)))


def relayed_chain(verified: Verified, ours: Custodian, *, stated: datetime | None,
                  member_of: MemberOf | None = None) -> tuple[Custodian, ...]:
    """The chain of a document we relay (``ours`` our hop, ``at`` when we relay it): the chain it had
    when we received it, or its originator alone when it came straight from it, then our hop."""
    before = received_chain(verified, stated=stated, received=ours.at, member_of=member_of)
    return (*(before or (_originator(verified, stated, member_of or _nobody),)), ours)


def _originator(verified: Verified, stated: datetime | None, name: MemberOf) -> Custodian:
    return Custodian(ORIGINATOR, verified.originator.subject, verified.originator.fingerprint, stated,
                     name(verified.originator))


def _nobody(_signer: Signer) -> str:
    return ""


def member_names(registry: Registry) -> MemberOf:
    """A signer -> the name of the member whose pinned certificate it is, or whose CA issued it."""
    pinned = {fingerprint(c): m.name for m in registry.members for c in m.certificates}
    issuers = [(a.subject, m.name) for m in registry.members for a in m.authorities]

    def name(signer: Signer) -> str:
        found = pinned.get(signer.fingerprint)
        if found is not None:
            return found
        issuer: x509.Name = signer.certificate.issuer
        return next((member for subject, member in issuers if subject == issuer), "")

    return name


def describe(hop: Custodian, when: Callable[[datetime], str]) -> str:
    """One hop as a reader sees it, e.g. ``relay CN=CSIRT H (member cert-h; SHA-256 ab12...) at
    2026-12-03T09:00:00Z``; ``when`` writes the time (RFC 3339 in the feed, minutes in chat)."""
    who = "; ".join(part for part in (f"member {hop.member}" if hop.member else "",
                                      f"SHA-256 {hop.fingerprint}" if hop.fingerprint else "") if part)
    text = f"{hop.role} {hop.subject or 'unknown signer'}" + (f" ({who})" if who else "")
    return text + (f" at {when(hop.at)}" if hop.at is not None else ", time not recorded")
