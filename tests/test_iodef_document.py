"""read_document / document_from_root / split_document / incident_item_id (xmppbridge.iodef.document)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from lxml import etree

from xmppbridge.errors import InputRejected, MalformedXML, NotIodef, SchemaInvalid, TooLarge, UnsafeXML
from xmppbridge.iodef.document import (
    document_from_root,
    incident_item_id,
    read_document,
    split_document,
)
from xmppbridge.iodef.model import Document, Incident
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.iodef.schema import schema_errors

DATA = Path(__file__).parent / "data" / "iodef"
V1 = "urn:ietf:params:xml:ns:iodef-1.0"
V2 = "urn:ietf:params:xml:ns:iodef-2.0"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


# --- reading ----------------------------------------------------------------------------------------


def test_reads_reference_examples() -> None:
    doc1 = read_document(data("iodef1-minimal.xml"))
    assert doc1.version == "1.0" and doc1.schema_errors == []
    (incident,) = doc1.incidents
    assert (incident.id_name, incident.id, incident.restriction, incident.purpose) == (
        "csirt.example.org",
        "2024-0001",
        "need-to-know",
        "reporting",
    )

    doc2 = read_document(data("iodef2-minimal.xml"))
    assert doc2.version == "2.0" and doc2.schema_errors == []
    (incident,) = doc2.incidents
    assert (incident.restriction_raw, incident.restriction, incident.purpose) == (
        "amber",
        "need-to-know",
        "watch",
    )
    assert incident.report_time is None and incident.published_time == incident.generation_time


def test_strict_mode_raises_with_all_details() -> None:
    bad = (
        data("iodef2-minimal.xml")
        .replace(b'version="2.00"', b'version="2.0"')
        .replace(b'purpose="watch"', b'purpose="gossip"')
    )
    with pytest.raises(SchemaInvalid) as info:
        read_document(bad)
    assert info.value.reason == "schema-invalid"
    assert "not a valid IODEF 2.0 document" in str(info.value)
    assert "'2.00'" in str(info.value) and "(and 1 more)" in str(info.value)
    assert len(info.value.details) == 2
    assert all(re.match(r"line \d+: ", detail) for detail in info.value.details)


def test_warn_mode_accepts_well_formed_invalid_and_keeps_errors() -> None:
    bad = data("iodef1-minimal.xml").replace(b'purpose="reporting"', b'purpose="watch"')
    doc = read_document(bad, schema_mode="warn")
    assert doc.version == "1.0"
    assert len(doc.schema_errors) == 1 and "'watch'" in doc.schema_errors[0]
    assert doc.incidents[0].purpose == "watch"


def test_warn_mode_still_refuses_unsafe_and_non_iodef() -> None:
    with pytest.raises(UnsafeXML):
        read_document(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', schema_mode="warn")
    with pytest.raises(NotIodef):
        read_document(b'<IODEF-Document xmlns="urn:example"/>', schema_mode="warn")


def test_unknown_schema_mode() -> None:
    with pytest.raises(ValueError, match="schema_mode"):
        read_document(data("iodef2-minimal.xml"), schema_mode="off")


def test_document_from_root_of_embedded_payload() -> None:
    item = parse_untrusted(
        b'<item xmlns="http://jabber.org/protocol/pubsub#event" id="x">'
        + data("iodef2-minimal.xml").split(b"?>", 1)[1]
        + b"</item>"
    )
    doc = document_from_root(item[0])
    assert doc.version == "2.0" and doc.incidents[0].id == "2024-0002"


# --- hostile input ----------------------------------------------------------------------------------

HOSTILE = {
    "doctype": (
        b'<!DOCTYPE IODEF-Document SYSTEM "http://example.com/iodef.dtd"><IODEF-Document/>',
        UnsafeXML,
    ),
    "internal entity": (b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>', UnsafeXML),
    "xxe file": (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', UnsafeXML),
    "xxe http": (b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://example.com/x">]><r>&x;</r>', UnsafeXML),
    "parameter entity": (
        b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://example.com/p.dtd"> %p;]><r/>',
        UnsafeXML,
    ),
    "billion laughs": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
            for i in range(1, 10)
        )
        + b"]><lolz>&lol9;</lolz>",
        UnsafeXML,
    ),
    "malformed": (b"<IODEF-Document><Incident></IODEF-Document>", MalformedXML),
    "not xml": (b"\x00\x01binary", MalformedXML),
    "empty": (b"", MalformedXML),
    "wrong namespace": (
        b'<IODEF-Document xmlns="urn:ietf:params:xml:ns:iodef-3.0" version="3.00"/>',
        NotIodef,
    ),
    "atom feed": (b'<feed xmlns="http://www.w3.org/2005/Atom"/>', NotIodef),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_gets_the_right_error(case: tuple[bytes, type[InputRejected]]) -> None:
    payload, expected = case
    with pytest.raises(InputRejected) as info:
        read_document(payload)
    assert type(info.value) is expected, info.value


def test_entities_are_never_expanded() -> None:
    try:
        read_document(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>')
    except InputRejected as exc:
        assert "root:" not in str(exc)


def test_oversized_document() -> None:
    doc = data("iodef2-minimal.xml")
    with pytest.raises(TooLarge, match="limit"):
        read_document(doc, max_bytes=len(doc) - 1)
    assert read_document(doc, max_bytes=len(doc)).incidents


# --- split ------------------------------------------------------------------------------------------


def test_single_category_is_not_split() -> None:
    doc = read_document(data("iodef2-minimal.xml"))
    assert split_document(doc) == [doc]
    assert split_document(doc)[0] is doc


def test_same_category_several_incidents_not_split() -> None:
    source = (
        data("iodef2-mixed-signed.xml")
        .replace(b'restriction="white"', b'restriction="amber"')
        .replace(b'purpose="reporting"', b'purpose="mitigation"')
    )
    doc = read_document(source)
    assert len(doc.incidents) == 2
    assert split_document(doc) == [doc]


def _categories(piece: Document) -> list[tuple[str, str]]:
    return [(incident.restriction, incident.purpose) for incident in piece.incidents]


def test_split_v2_mixed_document() -> None:
    doc = read_document(data("iodef2-mixed-signed.xml"))
    original = etree.tostring(doc.root)
    pieces = split_document(doc)
    assert [_categories(piece) for piece in pieces] == [
        [("need-to-know", "mitigation")],
        [("public", "reporting")],
    ]
    assert [piece.incidents[0].id for piece in pieces] == ["T-21", "T-22"]
    for piece in pieces:
        assert piece.version == "2.0"
        assert piece.root is not doc.root and piece.root.getparent() is None
        assert piece.schema_errors == [] and schema_errors(piece.root) == []
        extras = piece.root.findall(f"{{{V2}}}AdditionalData")
        assert [extra.get("meaning") for extra in extras] == ["export-note"]  # note kept, signature dropped
        assert piece.root.find(f".//{{{DS}}}Signature") is None
    assert etree.tostring(doc.root) == original  # the input document is untouched


def test_split_v1_mixed_document_drops_incident_level_signature() -> None:
    doc = read_document(data("iodef1-mixed.xml"))
    pieces = split_document(doc)
    assert [_categories(piece) for piece in pieces] == [[("public", "reporting")], [("private", "reporting")]]
    for piece in pieces:
        assert piece.version == "1.0"
        assert schema_errors(piece.root) == []
        assert piece.root.find(f".//{{{DS}}}Signature") is None
        assert len(piece.root.findall(f"{{{V1}}}Incident")) == 1


def test_split_by_purpose_alone() -> None:
    source = data("iodef2-mixed-signed.xml").replace(b'restriction="white"', b'restriction="amber"')
    pieces = split_document(read_document(source))
    assert [_categories(piece) for piece in pieces] == [
        [("need-to-know", "mitigation")],
        [("need-to-know", "reporting")],
    ]


def test_split_of_embedded_payload() -> None:
    body = data("iodef2-mixed-signed.xml").split(b"?>", 1)[1]
    item = parse_untrusted(
        b'<item xmlns="http://jabber.org/protocol/pubsub#event" id="x">' + body + b"</item>"
    )
    pieces = split_document(document_from_root(item.find(f"{{{V2}}}IODEF-Document")))
    assert len(pieces) == 2
    for piece in pieces:
        assert piece.root.getparent() is None
        assert etree.QName(piece.root).namespace == V2
        assert b"pubsub#event" not in etree.tostring(piece.root)


def test_split_in_warn_mode_keeps_errors_instead_of_raising() -> None:
    source = data("iodef2-mixed-signed.xml").replace(b'version="2.00"', b'version="2.0"')
    doc = read_document(source, schema_mode="warn")
    pieces = split_document(doc)
    assert len(pieces) == 2
    assert all(piece.schema_errors for piece in pieces)


# --- item ids ---------------------------------------------------------------------------------------

SAFE = re.compile(r"[A-Za-z0-9._:/-]{1,200}")


def make(name: str = "csirt.a.test", ident: str = "A-2024-0001", instance: str | None = None) -> Incident:
    return Incident(
        id_name=name,
        id=ident,
        instance=instance,
        restriction_raw="private",
        restriction="private",
        purpose="reporting",
    )


def test_readable_item_id() -> None:
    assert incident_item_id(make()) == "csirt.a.test/A-2024-0001"
    assert incident_item_id(make(ident="2024/05/0001")) == "csirt.a.test/2024/05/0001"


@pytest.mark.parametrize(
    "incident",
    [
        make(instance="part-1"),
        make(instance=""),
        make(ident="A 2024"),
        make(ident="A&B<>\"'"),
        make(ident="Ü-1"),
        make(ident="x" * 200),
        make(ident="../../etc/passwd"),
        make(ident="a//b"),
        make(ident="a/"),
        make(name="a/b", ident="c"),
        make(name="..", ident="x"),
        make(name="", ident="x"),
    ],
    ids=lambda incident: repr((incident.id_name, incident.id[:20], incident.instance)),
)
def test_hashed_item_id(incident: Incident) -> None:
    item_id = incident_item_id(incident)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", item_id)
    assert item_id == incident_item_id(make(incident.id_name, incident.id, incident.instance))


def test_item_ids_are_deterministic_distinct_and_safe() -> None:
    cases = [
        make(),
        make(ident="A-2024-0002"),
        make(name="csirt.b.test"),
        make(instance="1"),
        make(instance="2"),
        make(ident="a b"),
        make(ident="a  b"),
        make(name="a", ident="b/c"),
        make(name="a/b", ident="c"),
    ]
    ids = [incident_item_id(incident) for incident in cases]
    assert ids == [incident_item_id(incident) for incident in cases]
    assert len(set(ids)) == len(ids)
    for item_id in ids:
        assert SAFE.fullmatch(item_id)
        assert all(segment not in ("", ".", "..") for segment in item_id.split("/"))


def test_item_id_ignores_classification_fields() -> None:
    public = Incident(
        id_name="csirt.a.test",
        id="A-1",
        instance=None,
        restriction_raw="white",
        restriction="public",
        purpose="watch",
        title="changed",
    )
    assert incident_item_id(public) == incident_item_id(make(ident="A-1"))


def test_item_ids_of_split_pieces() -> None:
    pieces = split_document(read_document(data("iodef2-mixed-signed.xml")))
    assert [incident_item_id(piece.incidents[0]) for piece in pieces] == [
        "csirt.a.test/T-21",
        "csirt.a.test/T-22",
    ]
