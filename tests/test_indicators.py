"""Indicators read from IODEF documents by XML path (xmppbridge.iodef.indicators): every kind, its role
and expectation, normal forms, and what is about the report rather than the incident."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from xmppbridge.iodef.indicators import Indicator, extract
from xmppbridge.iodef.parse import parse_untrusted

DATA = Path(__file__).parent / "data" / "iodef"
BLOCK = "block-host,block-network"  # the EventData's Expectations, each action once, in order


def indicators_of(path: Path) -> tuple[Indicator, ...]:
    return extract(parse_untrusted(path.read_bytes()))


def test_every_kind_with_its_role_and_normal_form() -> None:
    assert indicators_of(DATA / "iodef2-indicators.xml") == (
        Indicator("domain", "drop.example.net", "source", BLOCK),  # lower case, root dot gone
        Indicator("ipv6-addr", "2001:db8::1", "source", BLOCK),  # RFC 5952
        Indicator("ipv4-net", "203.0.113.0/25", "source", BLOCK),  # a masked network as a prefix
        Indicator("port", "8080/tcp", "source", BLOCK),
        Indicator("email", "victim@example.org", "target", BLOCK),
        Indicator("protocol", "icmp", "target", BLOCK),  # a Service with a protocol and no port
        Indicator("url", "http://drop.example.net:8080/invoice.pdf.exe", "observable"),
        Indicator("hash", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "observable",
                  algorithm="sha256"),  # base64 DigestValue as hex
        Indicator("email", "victim@example.org", "observable"),
        Indicator("email", "billing@phish.example.com", "observable"),
    )


def test_the_reports_own_addresses_are_not_indicators() -> None:
    values = {i.value for i in indicators_of(DATA / "iodef2-indicators.xml")}
    assert "csirt@a.test" not in values  # the Contact's e-mail
    assert not any("advisories" in v for v in values)  # a RelatedActivity URL


def test_iodef1_names_addresses_and_ports_with_the_1_0_attribute_name() -> None:
    found = indicators_of(SAMPLES / "03-malware-need-to-know-v1.xml")
    assert [(i.kind, i.value, i.role) for i in found] == [
        ("domain", "ws-0415.corp.example.com", "source"), ("ipv4-addr", "192.0.2.15", "source"),
        ("domain", "cdn-update.example.com", "target"), ("ipv4-addr", "198.51.100.140", "target"),
        ("port", "443/tcp", "target"),  # Service@ip_protocol, the 1.0 spelling
    ]
    assert {i.expectation for i in found} == {"block-host"}


def test_a_signatures_digest_is_not_a_hash_indicator() -> None:
    assert indicators_of(DATA / "iodef1-mixed.xml") == ()  # DigestValue inside ds:Reference


@pytest.mark.parametrize(("written", "kind", "value"), [
    ("<Address>192.0.2.1</Address>", "ipv4-addr", "192.0.2.1"),  # the category defaults to ipv4-addr
    ('<Address category="ipv4-net">192.0.2.7/24</Address>', "ipv4-net", "192.0.2.0/24"),
    ('<Address category="ipv6-net">2001:DB8::/32</Address>', "ipv6-net", "2001:db8::/32"),
    ('<Address category="ipv4-addr">not an address</Address>', "ipv4-addr", "not an address"),
    ('<Address category="mac">00:1A:2B:3C:4D:5E</Address>', "mac", "00:1a:2b:3c:4d:5e"),
    ('<Address category="asn">64496</Address>', "asn", "64496"),
    ('<Address category="atm">47.0005</Address>', "atm", "47.0005"),
    ("<NodeName>  </NodeName>", None, None),  # nothing written, nothing extracted
])
def test_address_categories(written: str, kind: str | None, value: str | None) -> None:
    document = f"""<IODEF-Document version="1.00" xmlns="urn:ietf:params:xml:ns:iodef-1.0">
      <Incident purpose="other"><EventData><Flow><System category="intermediate"><Node>{written}</Node>
      </System></Flow></EventData></Incident></IODEF-Document>""".encode()
    expected = () if kind is None else (Indicator(kind, value or "", "intermediate"),)
    assert extract(parse_untrusted(document)) == expected


def test_every_sample_has_indicators_and_all_are_hosts_or_ports() -> None:
    for sample in sorted(SAMPLES.glob("*.xml")):
        found = indicators_of(sample)
        assert found, sample.name
        assert {i.kind for i in found} <= {"ipv4-addr", "ipv4-net", "domain", "port"}, sample.name
