"""Our own signing key on a reload (SIGHUP): go on signing with the running key, or switch to the one the
config's ``signing:`` names now. Pure: ``reload.reload_signing`` reads the files and logs the outcome, the
bridge and the feed processes swap the identity they sign with (publisher, hub).

The new key is refused, and the running one kept, when its files could not be read as a key and its
certificate (the loader's message), when every receiver would refuse the certificate (expired, not yet
valid, weak key, no digitalSignature: ``signing.keys.signing_certificate_problem``), or when our own
registry entry pins certificates or CAs and the new certificate is neither one of them nor issued by one
of them: the peers read the same registry, and would quarantine what it signs. What was signed before a
switch keeps its bytes: the outbox holds signed items, which the drain publishes as they are, and the
item ids come from the IncidentID, not from the key.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from xmppbridge.policy.members import Member
from xmppbridge.signing.keys import SigningIdentity, fingerprint, signing_certificate_problem


@dataclass(frozen=True)
class KeyDecision:
    identity: SigningIdentity  # what we sign with from now on
    previous: SigningIdentity  # what we signed with before the reload
    refused: str | None = None  # why the key the config names is not used, for the error log

    @property
    def switched(self) -> bool:
        return self.identity is not self.previous

    def line(self) -> str | None:
        """The audit line of a switch; None when the key stays."""
        if not self.switched:
            return None
        return (f"signing with {self.identity.subject} (certificate {self.identity.fingerprint}) instead of "
                f"{self.previous.subject} (certificate {self.previous.fingerprint})")


def own_key(running: SigningIdentity, loaded: SigningIdentity | str, own: Member | None,
            now: datetime.datetime) -> KeyDecision:
    """What to sign with after a reload: ``loaded`` is the identity the config's files hold now, or why
    they could not be read as one; ``own`` is our entry in the reloaded registry, if we have one."""
    if isinstance(loaded, str):
        return KeyDecision(running, running, loaded)
    if _same(running, loaded):
        return KeyDecision(running, running)
    problem = signing_certificate_problem(loaded.certificate, now)
    if problem:
        return KeyDecision(running, running, f"the new certificate {loaded.subject} {problem.text}, so every "
                                             f"peer would refuse what it signs as {problem.reason}")
    if own is not None and not _registered(loaded, own):
        return KeyDecision(running, running, (
            f"the new certificate {loaded.subject} ({loaded.fingerprint}) is not in our own registry entry "
            f"({own.name}: certificate, or issued by its ca), so the peers would quarantine what it signs; "
            "list it there and in every member's registry first, and reload"))
    return KeyDecision(loaded, running)


def _same(a: SigningIdentity, b: SigningIdentity) -> bool:
    """The same certificate and chain: the key then is the same too (each identity's key matches it)."""
    return (a.fingerprint, [fingerprint(c) for c in a.intermediates]) == (
        b.fingerprint, [fingerprint(c) for c in b.intermediates])


def _registered(identity: SigningIdentity, own: Member) -> bool:
    """Our registry entry names this certificate, or one of its CAs issued it (through the intermediates we
    embed); an entry that names neither pins nothing, and the peers' trust decides alone."""
    if not own.certificates and not own.authorities:
        return True
    if any(fingerprint(c) == identity.fingerprint for c in own.certificates):
        return True
    chain = (identity.certificate, *identity.intermediates)
    links = all(_issued_by(child, parent) for child, parent in zip(chain, chain[1:], strict=False))
    return links and any(_issued_by(chain[-1], ca) for ca in own.authorities)


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
