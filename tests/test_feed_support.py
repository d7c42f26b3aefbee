"""Shared support for the feed tests (schemas, documents, users, clients), and tests of that support.

The Atom, AtomPub and ROLIE RELAX NG schemas are the RFCs' compact schemas converted with Debian's trang.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree, isoschematron

from xmppbridge.feed.access import User
from xmppbridge.feed.app import make_app
from xmppbridge.feed.auth import hash_password, hash_token
from xmppbridge.feed.settings import FeedSettings
from xmppbridge.iodef.document import read_document
from xmppbridge.paths.publish import Publisher
from xmppbridge.policy.nodes import node_name
from xmppbridge.policy.rights import Rights
from xmppbridge.store import Entry, Store
from xmppbridge.store.items import SignedItem, Signer

REPO = Path(__file__).resolve().parents[1]
ATOM_SCHEMAS = REPO / "schemas" / "atom"

ATOM = "http://www.w3.org/2005/Atom"
APP = "http://www.w3.org/2007/app"
ROLIE = "urn:ietf:params:xml:ns:rolie-1.0"
FH = "http://purl.org/syndication/history/1.0"
AT = "http://purl.org/atompub/tombstones/1.0"
OS = "http://a9.com/-/spec/opensearch/1.1/"
NS = {"atom": ATOM, "app": APP, "rolie": ROLIE, "fh": FH, "at": AT, "os": OS}
RESTRICTION_SCHEME = "urn:ietf:params:rolie:category:csirt:iodef:restriction"
PURPOSE_SCHEME = "urn:ietf:params:rolie:category:csirt:iodef:purpose"
INFO_TYPE_SCHEME = "urn:ietf:params:rolie:category:information-type"

# A base URL with a path and another host than the test server: links must come from it, not from Host.
BASE = "https://feeds.example.org/rolie/"
SERVICE = "pubsub.a.test"


# -- schemas -------------------------------------------------------------------------------------------


@dataclass
class AtomSchemas:
    rolie: etree.RelaxNG  # feeds and entries (rolie.rng includes atomsynd.rng)
    service: etree.RelaxNG
    categories: etree.RelaxNG
    rolie_elements: etree.RelaxNG  # start = rolieFormat | rolieProperty: rolie.rng defines, never references
    rules: isoschematron.Schematron  # the Schematron asserts embedded in atomsynd (RELAX NG ignores them)

    def check_atom(self, body: bytes) -> etree._Element:
        doc = etree.fromstring(body)
        assert self.rolie.validate(doc), self.rolie.error_log
        assert self.rules.validate(doc), self.rules.error_log
        for element in doc.iter(f"{{{ROLIE}}}*"):
            standalone = etree.fromstring(etree.tostring(element))
            assert self.rolie_elements.validate(standalone), self.rolie_elements.error_log
        return doc

    def check_service(self, body: bytes) -> etree._Element:
        doc = etree.fromstring(body)
        assert self.service.validate(doc), self.service.error_log
        for element in doc.iter(f"{{{APP}}}categories"):
            standalone = etree.fromstring(etree.tostring(element))
            assert self.categories.validate(standalone), self.categories.error_log
        for element in doc.iter(f"{{{ROLIE}}}*"):
            standalone = etree.fromstring(etree.tostring(element))
            assert self.rolie_elements.validate(standalone), self.rolie_elements.error_log
        return doc

    def check_categories(self, body: bytes) -> etree._Element:
        doc = etree.fromstring(body)
        assert self.categories.validate(doc), self.categories.error_log
        return doc


def _schematron_from(rng: etree._ElementTree) -> isoschematron.Schematron:
    """Collect the old-style (ascc.net) Schematron rules trang carried over into an ISO schema, one
    pattern per rule: within one pattern only the first rule matching a node fires, and atomsynd has two
    rules with the same context."""
    old = "http://www.ascc.net/xml/schematron"
    iso = isoschematron.SCHEMATRON_NS
    schema = etree.Element(f"{{{iso}}}schema", nsmap={"sch": iso})
    etree.SubElement(schema, f"{{{iso}}}ns", prefix="atom", uri=ATOM)
    for rule in rng.getroot().iter(f"{{{old}}}rule"):
        pattern = etree.SubElement(schema, f"{{{iso}}}pattern")
        new_rule = etree.SubElement(pattern, f"{{{iso}}}rule", context=rule.get("context"))
        for assertion in rule.iter(f"{{{old}}}assert"):
            etree.SubElement(new_rule, f"{{{iso}}}assert", test=assertion.get("test")).text = assertion.text
    assert len(schema.findall(f"{{{iso}}}pattern")) == 3
    return isoschematron.Schematron(schema)


def convert_schemas(out: Path) -> AtomSchemas:
    trang = shutil.which("trang")
    if trang is None:
        pytest.fail("trang is not installed (Debian package 'trang'; `make test` installs it)")
    for name in ("atomsynd", "app-service", "app-categories", "rolie"):
        subprocess.run(
            [trang, "-I", "rnc", "-O", "rng", str(ATOM_SCHEMAS / f"{name}.rnc"), str(out / f"{name}.rng")],
            check=True,
            capture_output=True,
        )
    # libxml2 refuses to override a start that comes from a nested include, so add to it instead.
    wrapper = out / "rolie-elements.rng"
    wrapper.write_text(
        '<grammar xmlns="http://relaxng.org/ns/structure/1.0"><include href="rolie.rng"/>'
        '<start combine="choice"><choice><ref name="rolieFormat"/><ref name="rolieProperty"/></choice>'
        "</start></grammar>"
    )
    return AtomSchemas(
        rolie=etree.RelaxNG(etree.parse(str(out / "rolie.rng"))),
        service=etree.RelaxNG(etree.parse(str(out / "app-service.rng"))),
        categories=etree.RelaxNG(etree.parse(str(out / "app-categories.rng"))),
        rolie_elements=etree.RelaxNG(etree.parse(str(wrapper))),
        rules=_schematron_from(etree.parse(str(out / "atomsynd.rng"))),
    )


def test_schemas_are_not_vacuous(schemas: AtomSchemas) -> None:
    """The checks used by the feed tests do reject what they should."""
    entry = (
        f'<entry xmlns="{ATOM}"><id>urn:x</id><title>t</title><updated>2024-05-01T12:00:00Z</updated>'
        "<author><name>a</name></author>{}</entry>"
    )
    ok = entry.format('<content type="application/xml" src="http://x/"/>')
    schemas.check_atom(ok.encode())
    assert not schemas.rolie.validate(
        etree.fromstring(entry.format("<foo/>").replace("<updated>", "<x>").replace("</updated>", "</x>"))
    )
    assert not schemas.rules.validate(etree.fromstring(entry.format("")))  # neither content nor alternate
    assert not schemas.rolie.validate(etree.fromstring(ok.replace("12:00:00Z", "12:00")))  # not a dateTime
    bad_format = f'<format xmlns="{ROLIE}" version="2.0"/>'  # ns missing
    assert not schemas.rolie_elements.validate(etree.fromstring(bad_format))
    # ... which rolie.rng alone accepts, since it never references its own definitions:
    assert schemas.rolie.validate(etree.fromstring(ok.replace("</entry>", bad_format + "</entry>")))
    assert not schemas.service.validate(etree.fromstring(f'<service xmlns="{APP}"/>'))  # no workspace
    assert not schemas.categories.validate(etree.fromstring(f'<categories xmlns="{APP}" fixed="maybe"/>'))


# -- documents -----------------------------------------------------------------------------------------


def iodef2(
    incident_id: str,
    *,
    restriction: str = "public",
    purpose: str = "mitigation",
    description: str = "Botnet C2 seen at 192.0.2.10",
    name: str = "csirt.example.org",
    generated: str = "2024-05-01T12:00:00Z",
    report: str | None = None,
    detect: str | None = None,
    start: str | None = None,
    end: str | None = None,
    alternative: str | None = None,
    related: str | None = None,
) -> bytes:
    """A schema-valid IODEF 2.0 document with one Incident; optional parts where the schema wants them."""
    parts = [f'<IncidentID name="{name}">{incident_id}</IncidentID>']
    if alternative:
        parts.append(f'<AlternativeID><IncidentID name="other.example">{alternative}</IncidentID>'
                     "</AlternativeID>")
    if related:
        parts.append(f'<RelatedActivity><IncidentID name="{name}">{related}</IncidentID>'
                     "</RelatedActivity>")
    times = (("DetectTime", detect), ("StartTime", start), ("EndTime", end), ("ReportTime", report))
    for element, value in times:
        if value:
            parts.append(f"<{element}>{value}</{element}>")
    parts.append(f"<GenerationTime>{generated}</GenerationTime>")
    parts.append(f"<Description>{description}</Description>")
    parts.append('<Contact role="creator" type="organization"><Email><EmailTo>csirt@example.org</EmailTo>'
                 "</Email></Contact>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<IODEF-Document version="2.00" xml:lang="en" xmlns="urn:ietf:params:xml:ns:iodef-2.0">'
        f'<Incident purpose="{purpose}" restriction="{restriction}">{"".join(parts)}</Incident>'
        "</IODEF-Document>\n"
    ).encode()


def store_document(store: Store, xml: bytes, *, origin: str = "remote", service: str = SERVICE,
                   signer: str = "CN=csirt.example.org,O=Example") -> Entry:
    """Classify ``xml`` the way the bridge does and store it as a mirrored (or our own) entry."""
    document = read_document(xml)
    incident = document.incidents[0]
    node = node_name("iodef", incident.effective_restriction, incident.purpose)
    item_id = f"{incident.id_name}/{incident.id}"
    store.upsert_entry(
        service,
        SignedItem(node, item_id, xml, incident, document.version, Signer(signer, "ab" * 32)),
        origin=origin,
    )
    found = store.find_entry(service, node, item_id)
    assert found is not None
    return found


# -- users and clients ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # not a test class, whatever its name

    name: str
    password: str
    read: tuple[str, ...]
    write: tuple[str, ...] = ()

    def user(self) -> User:
        # A cheap scrypt cost: the format and check are the same, the tests just do not wait for it.
        return User(self.name, Rights.parse(self.read) | Rights.parse(self.write), Rights.parse(self.write),
                    password_hash=hash_password(self.password, n=2**8))

    @property
    def headers(self) -> dict[str, str]:
        return basic(self.name, self.password)


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


ANALYST = TestUser("analyst", "analyst-pw", ("all",), ("all",))
MEMBER = TestUser("member", "member-pw", ("public", "partner", "need-to-know", "default"))
OUTSIDER = TestUser("outsider", "outsider-pw", ())
MITIGATOR = TestUser("mitigator", "mitigator-pw", ("need-to-know/mitigation",), ("need-to-know/mitigation",))
TOKEN = "t0ken-for-tools"
TOOL = User("tool", Rights.parse(["public", "partner"]), token_hash=hash_token(TOKEN))
USERS = (ANALYST, MEMBER, OUTSIDER, MITIGATOR)


def settings(**changes: object) -> FeedSettings:
    values: dict[str, object] = {"base_url": BASE, "users": (*(u.user() for u in USERS), TOOL)}
    return FeedSettings(**(values | changes))  # type: ignore[arg-type]


async def client_for(store: Store, *, publisher: Publisher | None = None,
                     health: Mapping[str, object] | None = None, **changes: object) -> TestClient:
    app = make_app(store, settings(**changes), publisher=publisher,
                   health=(lambda: health) if health is not None else None)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def path_of(url: str) -> str:
    assert url.startswith(BASE), url
    return "/" + url[len(BASE):]


def categories(element: etree._Element) -> set[tuple[str, str]]:
    return {(c.get("scheme"), c.get("term")) for c in element.findall("atom:category", NS)}


def link(element: etree._Element, rel: str) -> str | None:
    found = element.find(f"atom:link[@rel='{rel}']", NS)
    return None if found is None else found.get("href")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
