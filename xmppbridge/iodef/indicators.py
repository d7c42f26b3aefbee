"""Indicators: the observables an analyst acts on, read from an IODEF document by XML path.

What is extracted, and from where (RFC 5070 §3.16-3.19 for 1.0, RFC 7970 §3.18-3.19, §3.20-3.29 for
2.0; element names are the same where both have them):

- ``Node/Address``: by its ``category`` (RFC 5070 §3.16.2, RFC 7970 §3.18.1; the default is
  ``ipv4-addr``): addresses and networks, e-mail addresses, MAC addresses, AS numbers, site URIs.
- ``Node/NodeName`` (1.0) and ``DomainData/Name`` (2.0): domain and host names.
- ``URL`` in an event's System, Service, file or observable (not in a Reference, a Contact or a
  RelatedActivity, which point at documents about the incident, not at the incident's hosts).
- ``EmailData/EmailTo`` and ``EmailFrom`` (2.0): e-mail addresses.
- ``HashData/Hash`` (2.0): ``ds:DigestMethod/@Algorithm`` and the base64 ``ds:DigestValue``, given
  as the algorithm's name and lower-case hex, as analysts' tools write hashes.
- ``Service/Port`` and ``Portlist`` with ``ip_protocol`` (1.0) or ``ip-protocol`` (2.0): ports, as
  ``443/tcp``; a Service with a protocol and no port gives the protocol alone.

Each indicator carries its role: the ``category`` of the System it sits in (``source``, ``target``,
``intermediate``, ``sensor``, ``infrastructure``, ``watchlist-source``...), or ``observable`` for an
IndicatorData observable outside any System. ``expectation`` holds the actions of the Expectations of
its EventData (``block-host``...), which is what a SOC turns into a blocklist.

The reporting team's own Contact details and signatures are not indicators and are skipped. The
document stays the source of truth: this is a reading of it, redone from the stored document whenever
it is needed, never a second copy that could drift.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from xmppbridge.iodef.model import NS_V1, NS_V2
from xmppbridge.iodef.parse import parse_untrusted

NS_DSIG = "http://www.w3.org/2000/09/xmldsig#"
_IODEF = (NS_V1, NS_V2)
_IODEF_PREFIX = "{urn:ietf:params:xml:ns:iodef-"  # of both versions' tags (the two namespaces above)
_WANTED = tuple(f"{{{ns}}}{name}" for ns in _IODEF for name in (
    "Address", "NodeName", "Name", "URL", "EmailTo", "EmailFrom", "Hash", "Service"))

# Address@category -> indicator kind (RFC 5070 §3.16.2, RFC 7970 §3.18.1). Masked networks
# ("ipv4-net-mask") are read as networks too; other categories (atm, ext-value) keep their own name.
_ADDRESS_KINDS = {
    "ipv4-addr": "ipv4-addr", "ipv4-net": "ipv4-net", "ipv4-net-mask": "ipv4-net",
    "ipv4-net-masked": "ipv4-net", "ipv6-addr": "ipv6-addr", "ipv6-net": "ipv6-net",
    "ipv6-net-mask": "ipv6-net", "ipv6-net-masked": "ipv6-net", "e-mail": "email", "mac": "mac",
    "asn": "asn", "site-uri": "url",
}
# XML Signature and Encryption digest algorithm URIs (RFC 6931 §2.1) -> the names tools use.
_DIGESTS = {
    "http://www.w3.org/2001/04/xmldsig-more#md5": "md5",
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmldsig-more#sha224": "sha224",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
# IANA protocol numbers the ports are given with; others are written "proto N".
_PROTOCOLS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp"}
# Where a URL or an e-mail address is about the report, not an indicator of the incident.
_NOT_INDICATORS = {"Contact", "Reference", "RelatedActivity", "AlternativeID", "ThreatActor", "Campaign",
                   "IncidentID", "Discovery", "History"}
HOST_KINDS = frozenset({"ipv4-addr", "ipv4-net", "ipv6-addr", "ipv6-net", "domain"})


@dataclass(frozen=True)
class Indicator:
    kind: str  # ipv4-addr, ipv4-net, ipv6-addr, ipv6-net, domain, url, email, hash, port, protocol, ...
    value: str  # normalised where the kind has a normal form (addresses, hashes); as written otherwise
    role: str  # the System's category, or "observable"
    expectation: str = ""  # the EventData's Expectation actions, comma-separated
    algorithm: str = ""  # for a hash: md5, sha1, sha256, ...

    @property
    def is_host(self) -> bool:
        return self.kind in HOST_KINDS


def of_document(xml: bytes) -> tuple[Indicator, ...]:
    """The indicators of a stored document. It was verified when it came in; it is still parsed with the
    safe parser, as any bytes from a peer are. Raises ``InputRejected`` if it does not parse."""
    return extract(parse_untrusted(xml, max_bytes=max(len(xml), 1)))


def extract(root: etree._Element) -> tuple[Indicator, ...]:
    """Every distinct indicator of the document ``root`` (an IODEF-Document), in document order."""
    found: dict[Indicator, None] = {}
    for element in root.iter(*_WANTED):  # libxml2 picks the elements; far cheaper than visiting each
        for indicator in _read(element):
            if indicator.value:
                found.setdefault(indicator, None)
    return tuple(found)


def _local(element: etree._Element | None) -> str:
    """The local name of an IODEF element ("" for anything else: comments, other namespaces)."""
    if element is None or not isinstance(element.tag, str) or not element.tag.startswith(_IODEF_PREFIX):
        return ""
    return element.tag.rpartition("}")[2]


def _read(element: etree._Element) -> Iterator[Indicator]:
    name, parent_name = _local(element), _local(element.getparent())
    if name == "Address" and parent_name in ("Node", "Observable"):
        category = element.get("category", "ipv4-addr")
        kind = _ADDRESS_KINDS.get(category, category)
        yield _at(element, kind, _address(kind, _text(element)))
    elif (name, parent_name) in (("NodeName", "Node"), ("Name", "DomainData")):
        yield _at(element, "domain", _text(element).rstrip(".").lower())
    elif name == "URL" and not _about_the_report(element) and _in_event(element):
        yield _at(element, "url", _text(element))
    elif name in ("EmailTo", "EmailFrom") and parent_name == "EmailData" and not _about_the_report(element):
        yield _at(element, "email", _address("email", _text(element)))
    elif name == "Hash" and parent_name == "HashData":
        hashed = _hash(element)
        if hashed is not None:
            yield _at(element, "hash", hashed[1], algorithm=hashed[0])
    elif name == "Service":
        yield from _ports(element)


def _at(element: etree._Element, kind: str, value: str, *, algorithm: str = "") -> Indicator:
    role, expectation = _context(element)
    return Indicator(kind, value, role, expectation, algorithm)


def _context(element: etree._Element) -> tuple[str, str]:
    """The category of the nearest System ("observable" outside one) and the Expectation actions of the
    nearest EventData."""
    role, actions = "", ""
    for ancestor in element.iterancestors():
        local = _local(ancestor)
        if local == "System" and not role:
            role = ancestor.get("category", "") or "system"
        elif local == "EventData" and not actions:
            actions = ",".join(dict.fromkeys(
                e.get("action", "other") for e in ancestor if _local(e) == "Expectation"))
    return role or "observable", actions


def _about_the_report(element: etree._Element) -> bool:
    return any(_local(a) in _NOT_INDICATORS for a in element.iterancestors())


def _in_event(element: etree._Element) -> bool:
    return any(_local(a) in ("EventData", "IndicatorData") for a in element.iterancestors())


def _text(element: etree._Element) -> str:
    return " ".join((element.text or "").split())


def _address(kind: str, value: str) -> str:
    """The normal form of an address or network (RFC 5952 for IPv6), or the text as written when it does
    not parse: it is still shown and exported, only not matched by containment."""
    try:
        if kind in ("ipv4-addr", "ipv6-addr"):
            return str(ipaddress.ip_address(value))
        if kind in ("ipv4-net", "ipv6-net"):
            return str(ipaddress.ip_network(value.replace(" ", "/"), strict=False))
    except ValueError:
        return value
    return value.lower() if kind in ("mac", "email") else value


def _hash(element: etree._Element) -> tuple[str, str] | None:
    method = element.find(f"{{{NS_DSIG}}}DigestMethod")
    digest = element.find(f"{{{NS_DSIG}}}DigestValue")
    if method is None or digest is None:
        return None
    algorithm = method.get("Algorithm", "")
    try:
        value = base64.b64decode("".join((digest.text or "").split()), validate=True).hex()
    except (binascii.Error, ValueError):
        return None
    return _DIGESTS.get(algorithm, algorithm), value


def _ports(service: etree._Element) -> Iterator[Indicator]:
    number = service.get("ip_protocol") or service.get("ip-protocol") or ""
    protocol = _PROTOCOLS.get(number, f"proto {number}" if number else "")
    ports = [_text(child) for child in service if _local(child) in ("Port", "Portlist")]
    for port in filter(None, ports):
        yield _at(service, "port", f"{port}/{protocol}" if protocol else port)
    if protocol and not any(ports):
        yield _at(service, "protocol", protocol)
