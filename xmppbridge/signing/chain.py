"""Certificates issued by a consortium CA: path validation, validity periods, revocation from CRL files.

Path building and the X.509 checks (signatures along the path, CA basic constraints and key usage,
validity at the given time) are cryptography's ``x509.verification`` (a Rust implementation of the
RFC 5280 algorithm with the CA/B Web PKI profile). Its end-entity profile is made for TLS (it wants a
subjectAltName and the clientAuth EKU), so the end-entity certificate is checked by our own document-
signing rules instead (``trust.py``). Revocation is not part of that API, so CRLs are checked here,
failing closed: a CRL that is stale or not signed by its issuer rejects the item until it is refreshed.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from xmppbridge.errors import SignatureRejected
from xmppbridge.signing.keys import validity_problem

# Member certificate <- optional intermediate <- consortium root: anything longer is a mistake.
MAX_CHAIN_DEPTH = 3
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)


def validate_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    when: datetime.datetime,
) -> tuple[x509.Certificate, ...]:
    """The validated chain, leaf first and root last; raises ``SignatureRejected`` saying why not.

    The caller has made sure that some certificate here claims to be issued by one of ``roots``.
    """
    for certificate in (leaf, *intermediates):
        _refuse_weak_signature(certificate)
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(when)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                            ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        chain = tuple(verifier.verify(leaf, list(intermediates)).chain)
    except VerificationError as exc:
        raise _explain(leaf, intermediates, roots, when, exc) from None
    check_revocation(chain, crls, when)
    return chain


def check_revocation(
    chain: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList], when: datetime.datetime
) -> None:
    """Each certificate against the CRLs of its issuer; issuers without a configured CRL are not checked."""
    for certificate, issuer in zip(chain, chain[1:], strict=False):
        relevant = [crl for crl in crls if crl.issuer == issuer.subject]
        if not relevant:
            continue
        authority = issuer.subject.rfc4514_string()
        signed = [crl for crl in relevant if crl.is_signature_valid(issuer.public_key())]  # type: ignore[arg-type]
        if not signed:
            raise SignatureRejected(
                f"the configured CRL for {authority} is not signed by that CA; revocation cannot be checked",
                reason="revocation-unknown",
            )
        crl = max(signed, key=lambda c: c.last_update_utc)
        if crl.next_update_utc is not None and when > crl.next_update_utc:
            raise SignatureRejected(
                f"the CRL of {authority} was due for renewal on {crl.next_update_utc:%Y-%m-%d %H:%M} UTC; "
                "install a current CRL and release the quarantined items",
                reason="revocation-unknown",
            )
        revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if revoked is not None:
            subject = certificate.subject.rfc4514_string()
            raise SignatureRejected(
                f"the certificate of {subject} (serial {certificate.serial_number}) was revoked by "
                f"{authority} on {revoked.revocation_date_utc:%Y-%m-%d %H:%M} UTC",
                reason="certificate-revoked",
            )


def _refuse_weak_signature(certificate: x509.Certificate) -> None:
    subject = certificate.subject.rfc4514_string()
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise SignatureRejected(f"the certificate of {subject} is signed with an unsupported algorithm",
                                reason="unsupported-algorithm") from None
    if isinstance(algorithm, _WEAK_HASHES):
        raise SignatureRejected(
            f"the certificate of {subject} is signed with {algorithm.name.upper()}, which is refused",
            reason="weak-algorithm",
        )


def _explain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    when: datetime.datetime,
    exc: VerificationError,
) -> SignatureRejected:
    """Turn the verifier's one error into the most specific reason we can state."""
    candidates = (leaf, *intermediates)
    subject = leaf.subject.rfc4514_string()
    related_roots = [root for root in roots if any(c.issuer == root.subject for c in candidates)]
    for certificate in (*candidates, *related_roots):
        problem = validity_problem(certificate, when)
        if problem:
            name = certificate.subject.rfc4514_string()
            clocks = " (check both clocks)" if problem.reason == "certificate-not-yet-valid" else ""
            return SignatureRejected(
                f"the certificate of {name} in the signer's chain {problem.text}{clocks}",
                reason=problem.reason)
    return SignatureRejected(f"the certificate chain of {subject} does not validate: {exc}",
                             reason="untrusted-chain")
