"""The ``trust:`` section and the per-subscription trust rules of a bridge config -> a ``TrustStore``.

::

    trust:
      anchors:                      # pinned member certificates: PEM files or directories of them
        - trust/
        - {cert: trust/b-2026.crt, until: 2027-02-01}   # accepted until then (key rotation overlap)
      ca: [ca/consortium-root.pem]  # consortium CA certificates: member certificates they issue are trusted
      crl: [ca/consortium.crl]      # revocation lists of those CAs (PEM or DER); stale ones fail closed
      domains:                      # IncidentID domains a signer speaks for, besides its subjectAltName
        "CN=CSIRT B,O=Consortium": [csirt-b.example]   # signer by subject DN or SHA-256 fingerprint
    subscriptions:
      - service: pubsub.csirt-b.example
        signers: ["CN=CSIRT B,O=Consortium"]   # accept only these signers from this service
        allow_domains: [partner.example]       # or "*": IncidentID domains accepted from any trusted signer

Every file is read and checked here, so a broken trust configuration stops the bridge at start-up with
``<file>: <key>: <problem>`` instead of rejecting items later.
"""

from __future__ import annotations

import datetime
import logging
import re
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cryptography import x509

from xmppbridge.jids import InvalidJID, service_key
from xmppbridge.signing.certfiles import certificate_files, load_certificates, load_crl
from xmppbridge.signing.keys import fingerprint, key_strength_problem
from xmppbridge.signing.trust import (
    ANY_DOMAIN,
    SignerRef,
    SourceRule,
    TrustStore,
    is_ca,
    pinned_by_fingerprint,
)

if TYPE_CHECKING:
    from pathlib import Path

    from xmppbridge.configfile import ConfigReader

log = logging.getLogger(__name__)
_DOMAIN = re.compile(r"(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.?", re.I)


def read_trust(r: ConfigReader) -> TrustStore:
    """Load and check everything the ``trust:`` section and ``subscriptions[].signers/allow_domains`` name."""
    pinned: dict[str, x509.Certificate] = {}
    retire_at: dict[str, datetime.datetime] = {}
    for key, path, until in _anchor_entries(r):
        for file in certificate_files(path, key):
            certificates = pinned_by_fingerprint(load_certificates(file, key), str(file))
            pinned.update(certificates)
            if until is not None:
                retire_at.update(dict.fromkeys(certificates, until))
    authorities = _authorities(r)
    crls = tuple(load_crl(r.path(key, value), key) for key, value in _strings(r, "trust.crl"))
    _check_crls(r, crls, authorities)
    return TrustStore(
        certificates=MappingProxyType(pinned),
        retire_at=MappingProxyType(retire_at),
        authorities=authorities,
        crls=crls,
        domains=_domains(r),
        sources=MappingProxyType(_sources(r)),
    )


def anchor_paths(r: ConfigReader) -> tuple[Path, ...]:
    """The files and directories of ``trust.anchors``, for ``Config.trust_anchors``."""
    return tuple(path for _, path, _ in _anchor_entries(r))


def _anchor_entries(r: ConfigReader) -> list[tuple[str, Path, datetime.datetime | None]]:
    entries = []
    for i, entry in enumerate(r.get("trust.anchors", [], list)):
        key = f"trust.anchors[{i}]"
        if isinstance(entry, dict):
            unknown = set(entry) - {"cert", "until"}
            if unknown or not isinstance(entry.get("cert"), str):
                raise r.error(key, "must be a path or a mapping {cert: FILE, until: DATE}")
            until = _moment(r, f"{key}.until", entry.get("until"))
            entries.append((key, r.path(f"{key}.cert", entry["cert"]), until))
        elif isinstance(entry, str):
            entries.append((key, r.path(key, entry), None))
        else:
            raise r.error(key, f"must be a path or a mapping {{cert: FILE, until: DATE}}, got {entry!r}")
    return entries


def _moment(r: ConfigReader, key: str, value: Any) -> datetime.datetime | None:
    """YAML gives dates and datetimes as objects, quoted ones as text; a date means 00:00 UTC that day."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise r.error(key, f"must be a date or time such as 2027-02-01, got {value!r}") from None
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    raise r.error(key, f"must be a date or time such as 2027-02-01, got {value!r}")


def _strings(r: ConfigReader, key: str) -> list[tuple[str, str]]:
    values = r.get(key, [], list)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise r.error(f"{key}[{i}]", f"must be a string, got {value!r}")
    return [(f"{key}[{i}]", value) for i, value in enumerate(values)]


def _authorities(r: ConfigReader) -> tuple[x509.Certificate, ...]:
    authorities: dict[str, x509.Certificate] = {}
    for key, value in _strings(r, "trust.ca"):
        path = r.path(key, value)
        for file in certificate_files(path, key):
            for certificate in load_certificates(file, key):
                subject = certificate.subject.rfc4514_string()
                if not is_ca(certificate):
                    raise r.error(key, f"{file}: {subject} is not a CA certificate (BasicConstraints "
                                       "CA:TRUE); pin member certificates in trust.anchors instead")
                problem = key_strength_problem(certificate.public_key())
                if problem:
                    raise r.error(key, f"{file}: CA {subject}: {problem}")
                authorities[fingerprint(certificate)] = certificate
    return tuple(authorities.values())


def _check_crls(r: ConfigReader, crls: tuple[x509.CertificateRevocationList, ...],
                authorities: tuple[x509.Certificate, ...]) -> None:
    if crls and not authorities:
        raise r.error("trust.crl", "CRLs revoke certificates of a consortium CA; configure it in trust.ca")
    now = datetime.datetime.now(datetime.UTC)
    for i, crl in enumerate(crls):
        issuer = crl.issuer.rfc4514_string()
        for authority in authorities:
            if authority.subject == crl.issuer and not crl.is_signature_valid(authority.public_key()):  # type: ignore[arg-type]
                raise r.error(f"trust.crl[{i}]", f"the CRL of {issuer} is not signed by the configured CA")
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            # Not fatal here: items signed under this CA are rejected (revocation-unknown) until the CRL is
            # replaced, and released from quarantine then.
            log.warning("trust.crl[%d]: the CRL of %s is stale (next update was due %s)", i, issuer,
                        crl.next_update_utc)


def domain_list(r: ConfigReader, key: str, value: Any, *, allow_any: bool) -> tuple[str, ...]:
    """A list of IncidentID domains (one string is a list of one), lowercased; ``"*"`` only if
    ``allow_any``. Also reads ``signing.domains`` (config/settings.py), which peers mirror in
    ``trust.domains``."""
    if allow_any and value == ANY_DOMAIN:
        return (ANY_DOMAIN,)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise r.error(key, "must be a non-empty list of domain names" + (' or "*"' if allow_any else ""))
    for domain in value:
        if not isinstance(domain, str) or not (
                _DOMAIN.fullmatch(domain) or (allow_any and domain == ANY_DOMAIN)):
            raise r.error(key, f"{domain!r} is not a domain name such as csirt-b.example")
    return tuple(d.lower().rstrip(".") for d in value)


def _domains(r: ConfigReader) -> tuple[tuple[SignerRef, tuple[str, ...]], ...]:
    mapping = r.get("trust.domains", {}, dict)
    bindings = []
    for signer, domains in mapping.items():
        key = f"trust.domains.{signer}"
        bindings.append((_signer_ref(r, key, signer), domain_list(r, key, domains, allow_any=False)))
    return tuple(bindings)


def _signer_ref(r: ConfigReader, key: str, text: Any) -> SignerRef:
    if not isinstance(text, str):
        raise r.error(key, f"must be a SHA-256 fingerprint or a subject DN, got {text!r}")
    try:
        return SignerRef.parse(text)
    except ValueError as exc:
        raise r.error(key, str(exc)) from None


def _sources(r: ConfigReader) -> dict[str, SourceRule]:
    rules: dict[str, SourceRule] = {}
    for i, sub in enumerate(r.get("subscriptions", [], list)):
        if not isinstance(sub, dict) or ("signers" not in sub and "allow_domains" not in sub):
            continue  # load_config reports malformed subscriptions
        key = f"subscriptions[{i}]"
        try:
            # Keyed as the subscriptions and the stanzas' senders are: a rule for "PubSub.B.test" must
            # apply to items from pubsub.b.test.
            service = service_key(str(sub.get("service")))
        except InvalidJID:
            continue  # load_config reports it
        if service in rules:
            raise r.error(key, f"signers/allow_domains for {service} are given by another subscription")
        signers = None
        if sub.get("signers") is not None:
            if not isinstance(sub["signers"], list) or not sub["signers"]:
                raise r.error(f"{key}.signers", "must be a non-empty list of fingerprints or subject DNs")
            signers = tuple(_signer_ref(r, f"{key}.signers[{j}]", s) for j, s in enumerate(sub["signers"]))
        allow = sub.get("allow_domains")
        domains = () if allow is None else domain_list(r, f"{key}.allow_domains", allow, allow_any=True)
        rules[service] = SourceRule(signers=signers, allow_domains=domains)
    return rules
