"""The checks that need no XMPP: signing identity, trust anchors and CRLs, the feed's address and TLS.

Thin I/O around ``advice``: read the files the config names, try to bind the feed's address.
"""

from __future__ import annotations

import datetime
import errno
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from xmppbridge.config.settings import Config
from xmppbridge.doctor.advice import base_url_check, certificate_check, crl_check, signing_usage_check
from xmppbridge.doctor.report import Check
from xmppbridge.feed.settings import FeedSettings
from xmppbridge.feed.tls import server_context
from xmppbridge.signing.keys import IdentityError, SigningIdentity

RENEW_SIGNING = ("issue a new signing certificate and send it to the members who pin it (they add it "
                 "with `until:` overlap, see README Trust)")


def signing_checks(config: Config, now: datetime.datetime) -> list[Check]:
    name = "signing certificate"
    try:
        certificate, *_ = x509.load_pem_x509_certificates(config.signing_cert.read_bytes())
    except (OSError, ValueError) as exc:
        return [Check(name, "FAIL", f"cannot read {config.signing_cert}: {_reason(exc)}",
                      "point signing.cert at the PEM certificate of the signing key")]
    checks = [certificate_check(name, certificate, now, renew=RENEW_SIGNING),
              signing_usage_check("signing key usage", certificate)]
    try:
        key = serialization.load_pem_private_key(config.signing_key.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise IdentityError(f"{type(key).__name__} keys are not supported")
        identity = SigningIdentity.from_objects(key, certificate)  # strength, and that the two match
    except (OSError, ValueError, TypeError, IdentityError) as exc:
        checks.append(Check("signing key", "FAIL", f"{config.signing_key}: {_reason(exc)}",
                            "point signing.key at the unencrypted PEM private key of signing.cert"))
    else:
        checks.append(Check("signing key", "ok", f"{config.signing_key} matches the certificate "
                            f"(SHA-256 {identity.fingerprint[:16]}…)"))
    return checks


def trust_checks(config: Config, now: datetime.datetime) -> list[Check]:
    """Pinned member certificates, consortium CAs and their CRLs. ``load_config`` has read them all
    already (an unreadable one stops it), so what is left to find is time running out."""
    trust = config.trust
    checks = [certificate_check(f"trust anchor {fp[:12]}", cert, now,
                                renew="get the member's new certificate and add it to trust.anchors")
              for fp, cert in sorted(trust.certificates.items())]
    checks += [certificate_check(f"consortium CA {i}", cert, now,
                                 renew="get the consortium's new CA certificate for trust.ca")
               for i, cert in enumerate(trust.authorities)]
    checks += [crl_check(f"CRL {i}", crl, now) for i, crl in enumerate(trust.crls)]
    if not checks:
        checks.append(Check("trust anchors", "ok", "none configured (no subscriptions to verify)"))
    return checks


def feed_checks(feed: FeedSettings, now: datetime.datetime, *, bridge_running: bool) -> list[Check]:
    return [_listen_check(feed, bridge_running=bridge_running), *_tls_checks(feed, now),
            base_url_check(feed.base_url, tls=feed.tls is not None)]


def _listen_check(feed: FeedSettings, *, bridge_running: bool) -> Check:
    name = "feed listen address"
    address = f"{feed.listen_host}:{feed.listen_port}"
    try:
        infos = socket.getaddrinfo(feed.listen_host, feed.listen_port, type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # As aiohttp binds (SO_REUSEADDR), so a port left in TIME_WAIT is not reported as taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
    except socket.gaierror as exc:
        return Check(name, "FAIL", f"{feed.listen_host} does not resolve: {exc.strerror}",
                     "set feed.listen to an address of this machine, e.g. 127.0.0.1:8080")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            if bridge_running:
                return Check(name, "ok", f"{address} is in use, by the running bridge's feed")
            return Check(name, "FAIL", f"{address} is in use by another program",
                         "stop it, or set feed.listen to a free port")
        return Check(name, "FAIL", f"cannot bind {address}: {exc.strerror}",
                     "set feed.listen to an address of this machine (ports below 1024 need privileges)")
    if bridge_running:
        return Check(name, "FAIL", f"the bridge runs but nothing listens on {address}",
                     "see the bridge's log: its feed did not start")
    return Check(name, "ok", f"{address} is free for the feed")


def _tls_checks(feed: FeedSettings, now: datetime.datetime) -> list[Check]:
    if feed.tls is None:
        return []
    try:
        server_context(feed.tls)  # what the bridge does at start: reads both, checks they match
        certificate, *_ = x509.load_pem_x509_certificates(Path(feed.tls.cert).read_bytes())
    except (OSError, ValueError, ssl.SSLError) as exc:
        return [Check("feed TLS", "FAIL", f"{feed.tls.cert} / {feed.tls.key}: {_reason(exc)}",
                      "point feed.tls.cert and feed.tls.key at the server's PEM certificate chain and key")]
    return [certificate_check("feed TLS certificate", certificate, now,
                              renew="renew the feed's server certificate")]


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
