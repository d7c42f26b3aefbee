"""Offline XSD compilation and validation (xmppbridge.iodef.schema)."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest
from lxml import etree

from xmppbridge.errors import NotIodef
from xmppbridge.iodef import schema
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.iodef.schema import (
    SchemaSetupError,
    catalog_map,
    detect_version,
    get_schema,
    schema_errors,
    schemas_dir,
)

DATA = Path(__file__).parent / "data" / "iodef"
REPO_SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a socket from Python fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load(name: str) -> etree._Element:
    return parse_untrusted((DATA / name).read_bytes())


def text(name: str) -> str:
    return (DATA / name).read_text()


# --- locating and compiling -------------------------------------------------------------------------


def test_schemas_dir_defaults_to_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(schema.SCHEMAS_ENV, raising=False)
    assert schemas_dir() == REPO_SCHEMAS


def test_schemas_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(schema.SCHEMAS_ENV, str(tmp_path))
    assert schemas_dir() == tmp_path.resolve()


def test_catalog_maps_sci_to_patched_copy() -> None:
    mapping = catalog_map(REPO_SCHEMAS)
    sci = mapping["http://www.iana.org/assignments/xml-registry/schema/iodef-sci-1.0.xsd"]
    assert sci.name == "iodef-sci-1.0.patched.xsd"
    assert all(path.is_file() for path in mapping.values())


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_compiles_offline_from_catalog_only(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh compile; every URL libxml2 asked for was either a local file or a catalog entry."""
    schema._compile.cache_clear()
    resolvers: list[schema._OfflineResolver] = []
    original_init = schema._OfflineResolver.__init__

    def recording_init(self: schema._OfflineResolver, *args: object) -> None:
        original_init(self, *args)
        resolvers.append(self)

    monkeypatch.setattr(schema._OfflineResolver, "__init__", recording_init)
    try:
        assert isinstance(get_schema(version), etree.XMLSchema)
    finally:
        schema._compile.cache_clear()
    (resolver,) = resolvers
    assert resolver.refused == []
    remote = [url for url in resolver.served if "://" in url]
    assert all(url in resolver.mapping for url in remote)
    if version == "2.0":  # iodef-2.0 pulls in xmldsig, xml.xsd, enum, sci and (through sci) iodef-1.0
        assert len(remote) == 5


def test_schema_is_compiled_once() -> None:
    assert get_schema("2.0") is get_schema("2.0")
    assert get_schema("1.0") is not get_schema("2.0")


def _writable_copy(tmp_path: Path) -> Path:
    """The repository's schemas (read-only files) copied into a writable directory."""
    target = tmp_path / "schemas"
    for source in REPO_SCHEMAS.rglob("*"):
        if source.is_file():
            dest = target / source.relative_to(REPO_SCHEMAS)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
    return target


def test_unmapped_import_is_refused_not_fetched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    copy = _writable_copy(tmp_path)
    catalog = copy / "catalog.xml"
    # Drop the xml.xsd entries: iodef-2.0's import of http://www.w3c.org/2001/xml.xsd is now unknown.
    catalog.write_text(
        "\n".join(line for line in catalog.read_text().splitlines() if "www.w3c.org/2001/xml.xsd" not in line)
    )
    monkeypatch.setenv(schema.SCHEMAS_ENV, str(copy))
    with pytest.raises(SchemaSetupError, match=re.escape("http://www.w3c.org/2001/xml.xsd")):
        get_schema("2.0")


def test_resolver_refuses_files_outside_schemas_dir(tmp_path: Path) -> None:
    outside = tmp_path / "evil.xsd"
    outside.write_text("<x/>")
    resolver = schema._OfflineResolver(REPO_SCHEMAS, {})
    assert resolver._local_path(str(outside)) is None
    assert resolver._local_path("https://example.com/x.xsd") is None
    assert resolver._local_path(str(REPO_SCHEMAS / "iodef" / "iodef-1.0.xsd")) is not None
    assert resolver._local_path((REPO_SCHEMAS / "w3c" / "xml.xsd").as_uri()) is not None


def test_missing_schemas_dir_gives_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(schema.SCHEMAS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SchemaSetupError, match="catalog.xml: not found"):
        get_schema("1.0")


# --- version detection ------------------------------------------------------------------------------


def test_detect_version_of_reference_examples() -> None:
    assert detect_version(load("iodef1-minimal.xml")) == "1.0"
    assert detect_version(load("iodef2-minimal.xml")) == "2.0"


def test_detect_version_uses_namespace_not_prefix() -> None:
    root = parse_untrusted(b'<i:IODEF-Document xmlns:i="urn:ietf:params:xml:ns:iodef-2.0" version="2.00"/>')
    assert detect_version(root) == "2.0"


@pytest.mark.parametrize(
    ("xml", "needle"),
    [
        (b'<IODEF-Document xmlns="urn:ietf:params:xml:ns:iodef-3.0"/>', "iodef-3.0"),
        (b"<IODEF-Document/>", "no namespace"),
        (b'<feed xmlns="http://www.w3.org/2005/Atom"/>', "<feed>"),
        (b'<Incident xmlns="urn:ietf:params:xml:ns:iodef-2.0"/>', "<Incident>"),
    ],
)
def test_detect_version_rejects_non_iodef(xml: bytes, needle: str) -> None:
    with pytest.raises(NotIodef, match=re.escape(needle)) as info:
        detect_version(parse_untrusted(xml))
    assert info.value.reason == "wrong-namespace"


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["iodef1-minimal.xml", "iodef2-minimal.xml", "iodef2-signature-placement-skeleton.xml"]
)
def test_reference_examples_validate(name: str) -> None:
    assert schema_errors(load(name)) == []


def _variant(name: str, old: str, new: str) -> etree._Element:
    source = text(name)
    assert old in source
    return parse_untrusted(source.replace(old, new, 1).encode())


DS = "http://www.w3.org/2000/09/xmldsig#"
REJECTED = {
    "2.0 version='2.0'": ("iodef2-minimal.xml", 'version="2.00"', 'version="2.0"', "'2.00'"),
    "1.0 purpose=watch": ("iodef1-minimal.xml", 'purpose="reporting"', 'purpose="watch"', "'watch'"),
    "1.0 restriction=amber": (
        "iodef1-minimal.xml",
        'restriction="need-to-know"',
        'restriction="amber"',
        "'amber'",
    ),
    "2.0 without GenerationTime": (
        "iodef2-minimal.xml",
        "<GenerationTime>2024-05-01T12:00:00Z</GenerationTime>",
        "",
        "GenerationTime",
    ),
    "ds:Signature as root child": (
        "iodef2-minimal.xml",
        "</IODEF-Document>",
        f'<ds:Signature xmlns:ds="{DS}"/></IODEF-Document>',
        "Signature",
    ),
}


@pytest.mark.parametrize("case", REJECTED.values(), ids=REJECTED.keys())
def test_digest_rejection_list(case: tuple[str, str, str, str]) -> None:
    name, old, new, needle = case
    errors = schema_errors(_variant(name, old, new))
    assert errors, "expected schema errors"
    assert all(re.match(r"line \d+: \S", error) for error in errors)
    assert needle in errors[0]


def test_error_messages_drop_own_namespace_but_keep_foreign_ones() -> None:
    errors = schema_errors(
        _variant(
            "iodef2-minimal.xml", "</IODEF-Document>", f'<ds:Signature xmlns:ds="{DS}"/></IODEF-Document>'
        )
    )
    assert "{urn:ietf:params:xml:ns:iodef-2.0}" not in errors[0]
    assert f"{{{DS}}}Signature" in errors[0]


def test_schema_location_is_ignored() -> None:
    """RFC 7970 §4.2 wants xsi:schemaLocation; we never follow it (and never fetch)."""
    root = _variant(
        "iodef2-minimal.xml",
        'xmlns="urn:ietf:params:xml:ns:iodef-2.0"',
        'xmlns="urn:ietf:params:xml:ns:iodef-2.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="urn:ietf:params:xml:ns:iodef-2.0 http://schemas.example.com/evil.xsd"',
    )
    assert schema_errors(root) == []


def test_validates_a_subtree_inside_a_pubsub_item() -> None:
    wrapper = etree.Element("{http://jabber.org/protocol/pubsub}item", id="x")
    wrapper.append(load("iodef2-minimal.xml"))
    assert schema_errors(wrapper[0]) == []


# --- the attribute-default trap ---------------------------------------------------------------------

V1_NO_RESTRICTIONS = """<IODEF-Document version="1.00" lang="en" xmlns="urn:ietf:params:xml:ns:iodef-1.0">
  <Incident purpose="reporting">
    <IncidentID name="csirt.a.test">T-1</IncidentID>
    <ReportTime>2024-05-01T12:00:00Z</ReportTime>
    <Assessment><Impact type="recon"/></Assessment>
    <Contact role="creator" type="organization"><Email>csirt@a.test</Email></Contact>
    <EventData><Flow><System><Node><Address>192.0.2.1</Address></Node></System></Flow></EventData>
  </Incident>
</IODEF-Document>"""


def test_validation_does_not_insert_attribute_defaults() -> None:
    root = parse_untrusted(V1_NO_RESTRICTIONS.encode())
    before = etree.tostring(root)
    assert schema_errors(root) == []
    assert etree.tostring(root) == before
    ns = "{urn:ietf:params:xml:ns:iodef-1.0}"
    assert root.find(f"{ns}Incident/{ns}IncidentID").get("restriction") is None


def test_the_trap_is_real_with_attribute_defaults() -> None:
    """Proves the previous test guards something: a defaults-inserting validator adds restrictions."""
    parser = etree.XMLParser(no_network=True, load_dtd=False)
    xsd = etree.parse(str(REPO_SCHEMAS / "iodef" / "iodef-1.0.xsd"), parser)  # no imports
    defaulting = etree.XMLSchema(xsd, attribute_defaults=True)
    root = parse_untrusted(V1_NO_RESTRICTIONS.encode())
    assert defaulting.validate(root)
    ns = "{urn:ietf:params:xml:ns:iodef-1.0}"
    assert root.find(f"{ns}Incident/{ns}IncidentID").get("restriction") == "public"
    assert root.find(f"{ns}Incident/{ns}EventData").get("restriction") == "default"


def test_guard_trips_if_validation_ever_adds_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = etree.XMLParser(no_network=True, load_dtd=False)
    xsd = etree.parse(str(REPO_SCHEMAS / "iodef" / "iodef-1.0.xsd"), parser)
    defaulting = etree.XMLSchema(xsd, attribute_defaults=True)
    real = schema._compile
    monkeypatch.setattr(
        schema, "_compile", lambda version, directory: (defaulting, real("1.0", directory)[1])
    )
    with pytest.raises(RuntimeError, match="added attributes"):
        schema_errors(parse_untrusted(V1_NO_RESTRICTIONS.encode()))


def test_detect_version_of_a_comment() -> None:
    with pytest.raises(NotIodef, match="expected an <IODEF-Document> element"):
        detect_version(etree.Comment("x"))
