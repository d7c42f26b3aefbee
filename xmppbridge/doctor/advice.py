"""The decisions of `xmppbridge doctor`: from what was found to ok/warn/FAIL and the fix. No I/O."""

from __future__ import annotations

import datetime
from urllib.parse import urlsplit

from cryptography import x509

from xmppbridge.doctor.report import Check
from xmppbridge.feed.settings import is_loopback
from xmppbridge.peers import TIMEOUT
from xmppbridge.signing.keys import SIGNER_FIXES, key_strength_problem, usage_problem, validity_problem
from xmppbridge.xmpp.authorization import UNSUPPORTED

EXPIRY_WARNING_DAYS = 30  # a certificate that expires sooner needs a replacement under way now
CRL_WARNING_DAYS = 3  # a CRL is usually reissued days before its nextUpdate; later than that is odd


def certificate_check(name: str, certificate: x509.Certificate, now: datetime.datetime, *,
                      renew: str) -> Check:
    """Validity period (judged as receivers judge it, keys.validity_problem) and days left. ``renew``
    says how this certificate is replaced."""
    subject = certificate.subject.rfc4514_string()
    problem = validity_problem(certificate, now)
    if problem is not None:
        fix = renew if problem.reason == "certificate-expired" else SIGNER_FIXES[problem.reason]
        return Check(name, "FAIL", f"{subject} {problem.text}", fix)
    not_after = certificate.not_valid_after_utc
    days = (not_after - now).days
    found = f"{subject}, valid until {not_after:%Y-%m-%d} ({days} days left)"
    if days < EXPIRY_WARNING_DAYS:
        return Check(name, "warn", found, renew)
    return Check(name, "ok", found)


def signing_usage_check(name: str, certificate: x509.Certificate) -> Check:
    """Receivers refuse signatures by a certificate whose KeyUsage leaves out digitalSignature, or whose
    key is weak (keys.usage_problem and key_strength_problem, the receivers' own decisions)."""
    weak = key_strength_problem(certificate.public_key())
    if weak:
        return Check(name, "FAIL", f"the key is refused by peers: {weak}", SIGNER_FIXES["weak-key"])
    problem = usage_problem(certificate)
    if problem is not None:
        return Check(name, "FAIL", f"KeyUsage {problem.text.removesuffix(' (KeyUsage)')}: peers refuse "
                     "its signatures", SIGNER_FIXES[problem.reason])
    try:
        certificate.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        return Check(name, "ok", "no KeyUsage extension (any use allowed)")
    return Check(name, "ok", "KeyUsage includes digitalSignature")


def crl_check(name: str, crl: x509.CertificateRevocationList, now: datetime.datetime) -> Check:
    issuer = crl.issuer.rfc4514_string()
    next_update = crl.next_update_utc
    fix = f"fetch the current CRL of {issuer} and replace the file"
    if next_update is None:
        return Check(name, "warn", f"CRL of {issuer} has no nextUpdate: nothing says when it goes stale", fix)
    if next_update < now:
        return Check(name, "FAIL", f"CRL of {issuer} is stale: its next update was due "
                     f"{next_update:%Y-%m-%d %H:%M} UTC; items signed under this CA are quarantined as "
                     "revocation-unknown", f"{fix}, then `xmppbridge quarantine release --reason "
                     "revocation-unknown`")
    found = f"CRL of {issuer}, next update {next_update:%Y-%m-%d %H:%M} UTC"
    if next_update - now < datetime.timedelta(days=CRL_WARNING_DAYS):
        return Check(name, "warn", found + " (soon)", fix + " before then (automate it)")
    return Check(name, "ok", found)


def xmpp_error_fix(condition: str, service: str, text: str = "") -> str:
    """What to do about an XMPP stanza error (RFC 6120 §8.3.3) that ``service`` or the s2s link gave;
    ``text`` is the error's text, which tells a name that did not resolve from a refused connection."""
    domain = service.partition("@")[2] or service
    said = text.lower()
    if condition == "remote-server-not-found" and "refused" in said:
        return (f"{domain} resolved, but nothing accepted the connection: the peer's server is down, or "
                "a firewall rejects port 5269 (or the port of its SRV record)")
    # Prosody 0.12 reports a connection attempt that timed out as remote-server-not-found.
    # TIMEOUT: our own request got no answer at all (xmppbridge.peers).
    if condition in ("remote-server-timeout", TIMEOUT) or (condition == "remote-server-not-found"
                                                           and "timeout" in said):
        return (f"the connection to {domain} timed out: a firewall between the servers drops it, or port "
                "5269 (or the port of its SRV record) is not open on the peer's server")
    if condition == "remote-server-not-found":
        return (f"our XMPP server cannot resolve or reach {domain}: check its DNS (SRV "
                f"_xmpp-server._tcp.{domain}, or an A/AAAA record) and our server's resolver; Prosody "
                "resolves with libunbound only when lua-unbound is installed (Debian: apt-get install "
                "lua-unbound), and ignores its `unbound` settings without it")
    if condition in ("forbidden", "not-authorized", "not-allowed", "registration-required"):
        return (f"ask the operator of {service} to put our component JID in that node's audience (their "
                "audiences: and members:, or pubsub.whitelist), or to approve our request (members approve)")
    if condition == "item-not-found":
        return f"check the node names in subscriptions[].nodes against what {service} has"
    if condition in ("service-unavailable", "feature-not-implemented"):
        return f"check subscriptions[].service: is {service} a pubsub service?"
    return f"see the XMPP server's log for the s2s link to {domain}"


def nodes_check(name: str, service: str, configured: tuple[str, ...] | None, discovered: list[str]) -> Check:
    """The nodes a subscription follows: the configured ones, or for "all" those whose ``pubsub#type``
    is an IODEF namespace (RFC 8600 §5)."""
    if configured is not None:
        untyped = [node for node in configured if node not in discovered]
        if untyped:
            return Check(name, "warn", f"not found as IODEF nodes (pubsub#type, RFC 8600 §5): "
                         f"{', '.join(untyped)}", f"check subscriptions[].nodes against {service}'s nodes")
        return Check(name, "ok", f"the {len(configured)} configured node(s) are IODEF nodes")
    if not discovered:
        return Check(name, "warn", "no node with an IODEF pubsub#type (RFC 8600 §5)",
                     "nothing to do if the peer has published nothing yet; otherwise its nodes lack "
                     "pubsub#type")
    return Check(name, "ok", f"{len(discovered)} node(s): {', '.join(sorted(discovered))}")


def approval_check(service: str, mode: str, supported: bool) -> Check:
    """``pubsub.approval`` against what our service offers (XEP-0060 §6.1.4 ``access-authorize``)."""
    name = f"approval on {service}"
    if mode == "off":
        return Check(name, "ok", "pubsub.approval is off: non-public nodes are whitelist")
    if supported:
        return Check(name, "ok", "authorize offered: subscriptions from bridges outside a node's audience "
                     "are held for `xmppbridge members approve|deny`")
    return Check(name, "warn", f"{service} does not offer the authorize access model: {UNSUPPORTED}",
                 "run the pubsub service on ejabberd for approval, or set pubsub.approval: off to say "
                 "that the audiences alone decide")


def base_url_check(url: str, *, tls: bool) -> Check:
    name = "feed base URL"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Check(name, "FAIL", f"{url!r} is not an absolute http(s) URL with a host",
                     "set feed.base_url to the public URL of the feed, e.g. https://feed.example/")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        # RFC 8322 §5.3: ROLIE feeds are served over TLS.
        return Check(name, "warn", f"{url} is plain HTTP on a non-loopback host",
                     "serve the feed over https (feed.tls, or a TLS-terminating proxy) and say so in "
                     "feed.base_url")
    if parts.scheme == "https" and not tls:
        return Check(name, "ok", f"{url} (TLS terminated in front of the bridge)")
    return Check(name, "ok", url)


def connection_check(outcome: str, detail: str, *, jid: str, address: str, timeout: float) -> Check:
    """The component connection (XEP-0114), from how the attempt ended: ``online``, a stream error
    condition (RFC 6120 §4.9.3) such as ``not-authorized``, ``refused`` or ``timeout``."""
    name = "component connection"
    said = f" ({detail})" if detail else ""
    if outcome == "online":
        return Check(name, "ok", f"connected to {address} as {jid}, secret accepted")
    if outcome == "not-authorized":
        return Check(name, "FAIL", f"the server at {address} refused the secret for {jid}: "
                     f"not-authorized{said}",
                     f"set component.secret (or the file component.secret_file names) to the "
                     f"component_secret of Component \"{jid}\" in the server's config")
    if outcome == "host-unknown":
        return Check(name, "FAIL", f"the server at {address} has no component {jid}: host-unknown{said}",
                     f"declare Component \"{jid}\" with a component_secret in the server's config, or fix "
                     "component.jid")
    if outcome == "refused":
        return Check(name, "FAIL", f"cannot connect to {address}{said}",
                     "the server's component port must be open: check that the server runs and that "
                     "component.server.host/port match its component_interfaces/component_ports (Prosody)")
    if outcome == "timeout":
        return Check(name, "FAIL", f"no component handshake with {address} within {timeout:.0f} s",
                     "check component.server.host/port: is it the server's component port (5347)?")
    return Check(name, "FAIL", f"the server at {address} closed the connection: {outcome}{said}",
                 "see the XMPP server's log")
