"""Who may sign what: the trust store of one bridge.

A signer is trusted when its certificate is

* **pinned**: byte for byte (SHA-256 fingerprint) one the operator listed in ``trust.anchors``. Several
  certificates may be pinned for one member, which is how keys are rotated without downtime; a pinned
  certificate may carry an end of its overlap (``until``), after which it is refused; or
* **issued by a consortium CA** listed in ``trust.ca``: the chain is validated (``chain.py``) and checked
  against the CRLs in ``trust.crl``.

Either way the certificate must be inside its validity period, allow digitalSignature (if it has a
KeyUsage extension at all, RFC 5280 §4.2.1.3) and carry an RSA-2048+ or ECDSA P-256+ key.

Being trusted is not enough to be believed: a member speaks only for its own IncidentID domains, those
in its certificate's subjectAltName dNSName entries plus those the operator binds to it in
``trust.domains``; a subscription may widen that (``allow_domains``) and may restrict which signers it
accepts from its service (``signers``). ``policy.sources.authorize_source`` applies those rules once the
signature holds.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography import x509

from xmppbridge.errors import ConfigError, SignatureRejected, UnknownSigner
from xmppbridge.signing.certfiles import certificate_files, load_certificates
from xmppbridge.signing.chain import validate_chain
from xmppbridge.signing.keys import (
    fingerprint,
    key_strength_problem,
    subject_text,
    usage_problem,
    validity_problem,
)

ANCHORS_KEY = "trust.anchors"
ANY_DOMAIN = "*"
DOMAIN_NOT_ALLOWED = "domain-not-allowed"  # the reason, here and where our own documents are published
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RDN_SEPARATOR = re.compile(r"(?<!\\)\s*,\s*")


@dataclass(frozen=True)
class SignerRef:
    """A signer as an operator names it: SHA-256 certificate fingerprint or subject DN (RFC 4514)."""

    text: str
    fingerprint: str | None = None
    subject: x509.Name | None = None
    issuer: x509.Name | None = None  # any certificate this CA issued (a registry member with a ca:)

    @classmethod
    def parse(cls, text: str) -> SignerRef:
        """Raises ``ValueError`` for text that is neither."""
        compact = text.strip().lower().removeprefix("sha256:").replace(":", "")
        if _HEX64.fullmatch(compact):
            return cls(text, fingerprint=compact)
        try:
            # People write "CN=CSIRT B, O=Consortium"; RFC 4514 has no space after the comma.
            name = x509.Name.from_rfc4514_string(",".join(_RDN_SEPARATOR.split(text.strip())))
        except ValueError:
            name = None
        if name is None or not list(name):
            raise ValueError(f"{text!r} is neither a SHA-256 fingerprint (64 hex digits) nor a subject DN "
                             "such as 'CN=CSIRT B,O=Consortium'")
        return cls(text, subject=name)

    def matches(self, certificate: x509.Certificate) -> bool:
        if self.fingerprint is not None:
            return fingerprint(certificate) == self.fingerprint
        if self.issuer is not None:
            return certificate.issuer == self.issuer
        return certificate.subject == self.subject


@dataclass(frozen=True)
class SourceRule:
    """What one subscription accepts from its pubsub service, beyond what the store trusts."""

    signers: tuple[SignerRef, ...] | None = None  # None: any trusted signer
    allow_domains: tuple[str, ...] = ()  # IncidentID domains accepted from any trusted signer; "*": all


@dataclass(frozen=True)
class Signer:
    """A trusted signer of one signature."""

    certificate: x509.Certificate
    via: str  # "pinned" or "ca"
    chain: tuple[x509.Certificate, ...] = ()  # "ca": the validated chain, leaf first

    @property
    def subject(self) -> str:
        return subject_text(self.certificate)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)


@dataclass(frozen=True)
class TrustStore:
    """Pinned certificates (by SHA-256 fingerprint, lowercase hex), CAs, CRLs and the authorisation rules."""

    certificates: Mapping[str, x509.Certificate]
    retire_at: Mapping[str, datetime.datetime] = field(default_factory=lambda: MappingProxyType({}))
    authorities: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    domains: tuple[tuple[SignerRef, tuple[str, ...]], ...] = ()
    sources: Mapping[str, SourceRule] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_certificates(cls, certificates: Iterable[x509.Certificate]) -> TrustStore:
        """Pinned certificates only (no CA, no rules)."""
        return cls(MappingProxyType(pinned_by_fingerprint(certificates, "<certificates>")))

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> TrustStore:
        """Pin every certificate in the given PEM files and directories (``*.pem``, ``*.crt``, not
        recursive); a file may hold several certificates."""
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        pinned: dict[str, x509.Certificate] = {}
        for path in map(Path, paths):
            for file in certificate_files(path, ANCHORS_KEY):
                pinned.update(pinned_by_fingerprint(load_certificates(file, ANCHORS_KEY), str(file)))
        return cls(MappingProxyType(pinned))

    def get(self, fingerprint_hex: str) -> x509.Certificate | None:
        return self.certificates.get(fingerprint_hex.lower())

    def __len__(self) -> int:
        return len(self.certificates)

    # -- is the signature's certificate trusted? ------------------------------------------------------

    def resolve(self, embedded: Sequence[x509.Certificate], when: datetime.datetime) -> Signer:
        """The trusted signer among the certificates a signature carries (leaf and maybe intermediates)."""
        signer = self._pinned(embedded, when) or self._issued(embedded, when)
        problem = usage_problem(signer.certificate)
        if problem:
            raise SignatureRejected(f"the certificate of {signer.subject} {problem.text}, so it may not "
                                    "sign documents", reason=problem.reason)
        return signer

    def _pinned(self, embedded: Sequence[x509.Certificate], when: datetime.datetime) -> Signer | None:
        for certificate in embedded:
            fp = fingerprint(certificate)
            pinned = self.certificates.get(fp)
            if pinned is None:
                continue
            until = self.retire_at.get(fp)
            if until is not None and when >= until:
                raise SignatureRejected(
                    f"the certificate of {pinned.subject.rfc4514_string()} (SHA-256 {fp}) was retired on "
                    f"{until:%Y-%m-%d %H:%M} UTC (the end of its rotation overlap in {ANCHORS_KEY})",
                    reason="signer-retired")
            _check_validity(pinned, when)
            return Signer(pinned, "pinned", (pinned,))
        return None

    def _issued(self, embedded: Sequence[x509.Certificate], when: datetime.datetime) -> Signer:
        leaves = [c for c in embedded if not is_ca(c)]
        issuers = {authority.subject for authority in self.authorities}
        if not leaves or not any(c.issuer in issuers for c in embedded):
            leaf = leaves[0] if leaves else embedded[0]
            subject, fp = leaf.subject.rfc4514_string(), fingerprint(leaf)
            ca_hint = " (or have the consortium CA in trust.ca issue theirs)" if self.authorities else ""
            raise UnknownSigner(
                f"document signed by unknown signer {subject} (SHA-256 fingerprint {fp}, issuer "
                f"{leaf.issuer.rfc4514_string()}); if this member should be trusted, obtain their "
                f"certificate out of band, check the fingerprint and add it to {ANCHORS_KEY}{ca_hint}")
        if len(leaves) > 1:
            raise SignatureRejected(
                f"the signature carries {len(leaves)} end-entity certificates; exactly one (the signer's, "
                "plus its intermediate CAs) is accepted", reason="bad-certificate")
        leaf = leaves[0]
        subject = subject_text(leaf)
        _check_validity(leaf, when)
        # Pinned keys are checked when loaded; this one we see for the first time.
        problem = key_strength_problem(leaf.public_key())
        if problem:
            raise SignatureRejected(f"the key of {subject} is refused: {problem}", reason="weak-key")
        intermediates = [c for c in embedded if c is not leaf]
        chain = validate_chain(leaf, intermediates, self.authorities, self.crls, when)
        return Signer(leaf, "ca", chain)

    # -- may it say what it says? ------------------------------------------------------------------------

    def bound_domains(self, certificate: x509.Certificate) -> tuple[str, ...]:
        """The IncidentID domains a signer speaks for: its subjectAltName dNSNames and ``trust.domains``."""
        domains = list(certificate_domains(certificate))
        for ref, bound in self.domains:
            if ref.matches(certificate):
                domains.extend(bound)
        return tuple(dict.fromkeys(domains))


NO_TRUST = TrustStore(MappingProxyType({}))  # trusts nobody: the default before a config is loaded


def certificate_domains(certificate: x509.Certificate) -> tuple[str, ...]:
    """The subjectAltName dNSNames of a certificate, lowercased: the IncidentID domains every member lets
    its signer speak for without any ``trust.domains`` binding."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(dict.fromkeys(name.lower() for name in san.get_values_for_type(x509.DNSName)))


def foreign_name(names: Iterable[str], domains: Sequence[str]) -> str | None:
    """The first IncidentID name that none of ``domains`` covers (see ``domain_allowed``), else None:
    the decision behind ``domain-not-allowed``, on receipt and at publish."""
    return next((name for name in names if not domain_allowed(name, domains)), None)


def domain_allowed(name: str, domains: Iterable[str]) -> bool:
    """``name`` is one of ``domains`` or a subdomain of one (``csirt.a.test`` under ``a.test``)."""
    name = name.strip().rstrip(".").lower()
    for domain in domains:
        if domain == ANY_DOMAIN:
            return True
        domain = domain.lower().removeprefix("*.").rstrip(".")
        if name == domain or name.endswith("." + domain):
            return True
    return False


def pinned_by_fingerprint(certificates: Iterable[x509.Certificate],
                          origin: str) -> dict[str, x509.Certificate]:
    """Refuses weak keys at load time: a pinned certificate that can never verify is a config mistake."""
    pinned: dict[str, x509.Certificate] = {}
    for certificate in certificates:
        problem = key_strength_problem(certificate.public_key())
        if problem:
            subject = certificate.subject.rfc4514_string()
            raise ConfigError(origin, ANCHORS_KEY, f"certificate {subject}: {problem}")
        pinned[fingerprint(certificate)] = certificate
    return pinned


def is_ca(certificate: x509.Certificate) -> bool:
    """A CA certificate (BasicConstraints CA:TRUE, RFC 5280 §4.2.1.9): it may issue, not sign documents."""
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


# What a receiver does about a sender's certificate outside its validity period.
_VALIDITY_FIXES = {
    "certificate-expired": "ask the member for their new certificate (and pin it in "
                           f"{ANCHORS_KEY} if you pin theirs)",
    "certificate-not-yet-valid": "check both clocks",
}


def _check_validity(certificate: x509.Certificate, when: datetime.datetime) -> None:
    problem = validity_problem(certificate, when)
    if problem:
        subject = certificate.subject.rfc4514_string()  # only now: it costs more than the check
        fix = _VALIDITY_FIXES[problem.reason]
        raise SignatureRejected(f"the certificate of {subject} {problem.text}; {fix}", reason=problem.reason)
