"""The demo documents in config/samples/: valid, fictional, and covering the categories the demo shows."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from lxml import etree

from xmppbridge.iodef.document import read_document, split_document
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.iodef.schema import schema_errors

SAMPLES = Path(__file__).resolve().parents[1] / "config" / "samples"
FILES = sorted(SAMPLES.glob("*.xml"))
NAME = re.compile(r"\d{2}-[a-z0-9-]+-v[12]\.xml")
DOC_NETS = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("198.51.100.0/24")]


def test_enough_samples() -> None:
    assert len(FILES) >= 7


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_sample_validates_against_its_xsd(path: Path) -> None:
    root = parse_untrusted(path.read_bytes())
    assert schema_errors(root) == []
    doc = read_document(path.read_bytes())
    assert path.name.endswith(f"-v{doc.version[0]}.xml")
    assert NAME.fullmatch(path.name)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_sample_is_fictional(path: Path) -> None:
    doc = read_document(path.read_bytes())
    for incident in doc.incidents:
        assert incident.id_name == "csirt.a.test"
        assert incident.title
        assert incident.published_time is not None
    ns = etree.QName(doc.root).namespace
    addresses = [elem.text.strip() for elem in doc.root.iter(f"{{{ns}}}Address")]
    assert addresses
    for address in addresses:
        network = ipaddress.ip_network(address, strict=False)
        assert any(network.subnet_of(net) for net in DOC_NETS), address
    hosts = [elem.text.strip() for tag in ("NodeName", "Name") for elem in doc.root.iter(f"{{{ns}}}{tag}")]
    assert all(host == "example.com" or host.endswith(".example.com") for host in hosts), hosts


def test_samples_cover_versions_restrictions_and_purposes() -> None:
    docs = [read_document(path.read_bytes()) for path in FILES]
    incidents = [incident for doc in docs for incident in doc.incidents]
    assert {doc.version for doc in docs} == {"1.0", "2.0"}
    written = {incident.restriction_raw for incident in incidents}
    assert {"public", "green", "need-to-know", "amber", "private"} <= written
    assert any(
        incident.get("restriction") is None
        for doc in docs
        for incident in doc.root.iter(f"{{{etree.QName(doc.root).namespace}}}Incident")
    ), "one sample must omit restriction"
    assert {"reporting", "mitigation", "watch", "traceback"} <= {incident.purpose for incident in incidents}


def test_mixed_sample_splits_into_valid_pieces() -> None:
    mixed = [
        doc for doc in (read_document(path.read_bytes()) for path in FILES) if len(split_document(doc)) > 1
    ]
    assert mixed, "one sample must hold Incidents of different restrictions"
    for doc in mixed:
        pieces = split_document(doc)
        assert len(pieces) == len(doc.incidents)
        assert len({piece.incidents[0].restriction for piece in pieces}) > 1
        for piece in pieces:
            assert schema_errors(piece.root) == []
            assert len(piece.incidents) == 1
