"""The ROLIE HTTP shell against the Atom / AtomPub RELAX NG schemas, feedparser and the access rules."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree, isoschematron

from xmppbridge.feed.app import FeedSettings, make_app
from xmppbridge.iodef.model import Incident
from xmppbridge.policy import RESTRICTIONS
from xmppbridge.store import Store

REPO = Path(__file__).resolve().parents[1]
ATOM_SCHEMAS = REPO / "schemas" / "atom"
DATA = Path(__file__).parent / "data" / "feed"

ATOM = "http://www.w3.org/2005/Atom"
APP = "http://www.w3.org/2007/app"
ROLIE = "urn:ietf:params:xml:ns:rolie-1.0"
NS = {"atom": ATOM, "app": APP, "rolie": ROLIE}
RESTRICTION_SCHEME = "urn:ietf:params:rolie:category:csirt:iodef:restriction"
PURPOSE_SCHEME = "urn:ietf:params:rolie:category:csirt:iodef:purpose"
INFO_TYPE_SCHEME = "urn:ietf:params:rolie:category:information-type"

# A base URL with a path and another host than the test server: links must come from it, not from Host.
BASE = "https://feeds.example.org/rolie/"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PER_RESTRICTION = 3
EXTRA_PUBLIC = 8  # public gets 11 entries: several pages at page size 4

# RFC 4151: "tag:" DNSname "," date ":" specific, specific = *( pchar / "/" / "?" ) per RFC 3986.
_DNS = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
TAG_URI = re.compile(
    rf"tag:{_DNS},\d{{4}}(?:-\d{{2}}(?:-\d{{2}})?)?:(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-F]{{2}})*"
)


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
        return doc


def _schematron_from(rng: etree._ElementTree) -> isoschematron.Schematron:
    """Collect the old-style (ascc.net) Schematron rules trang carried over into an ISO schema, one
    pattern per rule: within one pattern only the first rule matching a node fires, and atomsynd has two
    rules with the same context."""
    old = "http://www.ascc.net/xml/schematron"
    iso = isoschematron.SCHEMATRON_NS
    schema = etree.Element(f"{{{iso}}}schema", nsmap={"sch": iso})
    etree.SubElement(schema, f"{{{iso}}}ns", prefix="atom", uri=ATOM)
    rules = rng.getroot().iter(f"{{{old}}}rule")
    for rule in rules:
        pattern = etree.SubElement(schema, f"{{{iso}}}pattern")
        new_rule = etree.SubElement(pattern, f"{{{iso}}}rule", context=rule.get("context"))
        for assertion in rule.iter(f"{{{old}}}assert"):
            etree.SubElement(new_rule, f"{{{iso}}}assert", test=assertion.get("test")).text = assertion.text
    assert len(schema.findall(f"{{{iso}}}pattern")) == 3
    return isoschematron.Schematron(schema)


@pytest.fixture(scope="session")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> AtomSchemas:
    trang = shutil.which("trang")
    if trang is None:
        pytest.skip("trang is not installed (Debian package 'trang'): cannot convert the Atom .rnc schemas")
    out = tmp_path_factory.mktemp("rng")
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
    """The checks used below do reject what they should."""
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


# -- fixtures ------------------------------------------------------------------------------------------


def make_incident(n: int, restriction: str, **changes: object) -> Incident:
    base = Incident(
        id_name="csirt.example.org",
        id=f"2024-{n:04d}",
        instance=None,
        restriction_raw=restriction,
        restriction=restriction,
        purpose=["traceback", "mitigation", "reporting", "watch", "other"][n % 5],
        report_time=T0 + timedelta(hours=n),
        title=f"Incident number {n}" if n % 2 else "",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Filled:
    store: Store
    ids: dict[str, list[int]]  # restriction -> entry ids
    xml: dict[int, bytes]


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[Filled]:
    documents = [(DATA / "iodef1-minimal.xml").read_bytes(), (DATA / "iodef2-minimal.xml").read_bytes()]
    with Store(tmp_path / "feed.sqlite") as store:
        ids: dict[str, list[int]] = {r: [] for r in RESTRICTIONS}
        xml: dict[int, bytes] = {}
        n = 0
        for restriction in RESTRICTIONS:
            count = PER_RESTRICTION + (EXTRA_PUBLIC if restriction == "public" else 0)
            for _ in range(count):
                n += 1
                version = "1.0" if n % 2 else "2.0"
                body = documents[n % 2 == 0].replace(b"2024-000", f"2024-{n:03d}".encode())
                store.upsert_entry(
                    service="pubsub.a.test",
                    node=f"iodef/{restriction}/other",
                    item_id=f"item-{n}",
                    origin="remote" if n % 3 else "local",
                    incident=make_incident(n, restriction),
                    version=version,
                    xml=body,
                    signer_subject="CN=csirt.example.org,O=Example",
                    signer_fingerprint=f"{n:02x}" * 32,
                )
                entry = store.find_entry("pubsub.a.test", f"iodef/{restriction}/other", f"item-{n}")
                assert entry is not None
                ids[restriction].append(entry.id)
                xml[entry.id] = body
        yield Filled(store, ids, xml)


async def _client(store: Store, **settings: object) -> TestClient:
    app = make_app(store, FeedSettings(base_url=BASE, **settings))  # type: ignore[arg-type]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def anonymous(filled: Filled) -> AsyncIterator[TestClient]:
    client = await _client(filled.store)
    yield client
    await client.close()


@pytest.fixture
async def insider(filled: Filled) -> AsyncIterator[TestClient]:
    client = await _client(filled.store, anonymous_restrictions=frozenset(RESTRICTIONS), page_size=4)
    yield client
    await client.close()


def path_of(url: str) -> str:
    assert url.startswith(BASE), url
    return "/" + url[len(BASE) :]


async def get_ok(client: TestClient, url_or_path: str, media_type: str) -> bytes:
    path = path_of(url_or_path) if url_or_path.startswith("http") else url_or_path
    response = await client.get(path)
    assert response.status == 200, (path, response.status)
    assert response.headers["Content-Type"].split(";")[0] == media_type
    return await response.read()


def categories(element: etree._Element) -> set[tuple[str, str]]:
    return {(c.get("scheme"), c.get("term")) for c in element.findall("atom:category", NS)}


def link(element: etree._Element, rel: str) -> str | None:
    found = element.find(f"atom:link[@rel='{rel}']", NS)
    return None if found is None else found.get("href")


# -- service document ----------------------------------------------------------------------------------


async def test_service_document_for_anonymous_lists_only_public(
    anonymous: TestClient, schemas: AtomSchemas
) -> None:
    body = await get_ok(anonymous, "/.well-known/rolie/servicedocument", "application/atomsvc+xml")
    doc = schemas.check_service(body)
    assert [w.findtext("atom:title", namespaces=NS) for w in doc.findall("app:workspace", NS)] == ["Public"]
    [collection] = doc.findall(".//app:collection", NS)
    assert collection.get("href") == BASE + "feeds/public"
    assert collection.findtext("atom:title", namespaces=NS) == "Incidents (public)"
    assert b"partner" not in body and b"need-to-know" not in body and b"private" not in body


async def test_service_document_for_insider(insider: TestClient, schemas: AtomSchemas) -> None:
    body = await get_ok(insider, "/.well-known/rolie/servicedocument", "application/atomsvc+xml")
    doc = schemas.check_service(body)
    layout = {
        w.findtext("atom:title", namespaces=NS): [c.get("href") for c in w.findall("app:collection", NS)]
        for w in doc.findall("app:workspace", NS)
    }
    assert layout == {
        "Public": [BASE + "feeds/public"],
        "Consortium": [BASE + f"feeds/{r}" for r in ("partner", "need-to-know", "private", "default")],
    }
    for collection in doc.iter(f"{{{APP}}}collection"):
        restriction = collection.get("href").rsplit("/", 1)[1]
        assert collection.findtext("atom:title", namespaces=NS) == f"Incidents ({restriction})"
        accept = collection.find("app:accept", NS)
        assert accept is not None and not (accept.text or "").strip()  # read-only collection
        [cats] = collection.findall("app:categories", NS)
        assert cats.get("fixed") == "yes"
        found = categories(cats)
        assert [t for s, t in found if s == INFO_TYPE_SCHEME] == ["incident"]  # exactly one (RFC 8322 §5.1.2)
        assert {t for s, t in found if s == RESTRICTION_SCHEME} == {restriction}
        assert {t for s, t in found if s == PURPOSE_SCHEME} == {
            "traceback",
            "mitigation",
            "reporting",
            "watch",
            "other",
        }
        await get_ok(insider, collection.get("href"), "application/atom+xml")


async def test_service_document_with_nothing_readable_is_still_valid(
    filled: Filled, schemas: AtomSchemas
) -> None:
    client = await _client(filled.store, anonymous_restrictions=frozenset())
    try:
        doc = schemas.check_service(
            await get_ok(client, "/.well-known/rolie/servicedocument", "application/atomsvc+xml")
        )
        assert doc.findall(".//app:collection", NS) == []
        assert (await client.get("/feeds/public")).status == 404
    finally:
        await client.close()


# -- feeds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("restriction", RESTRICTIONS)
async def test_each_feed_validates_and_parses(
    insider: TestClient, filled: Filled, schemas: AtomSchemas, restriction: str
) -> None:
    response = await insider.get(f"/feeds/{restriction}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/atom+xml;type=feed;charset=utf-8"
    body = await response.read()
    doc = schemas.check_atom(body)
    assert doc.tag == f"{{{ATOM}}}feed"
    assert (
        doc.findtext("atom:id", namespaces=NS)
        == uuid.uuid5(uuid.NAMESPACE_URL, f"{BASE}feeds/{restriction}").urn
    )
    assert doc.findtext("atom:title", namespaces=NS) == f"Incidents ({restriction})"
    assert (INFO_TYPE_SCHEME, "incident") in categories(doc)
    assert link(doc, "self") == f"{BASE}feeds/{restriction}"
    assert link(doc, "service") == f"{BASE}.well-known/rolie/servicedocument"
    assert link(doc, "first") == f"{BASE}feeds/{restriction}"

    entries = doc.findall("atom:entry", NS)
    stored = filled.store.entries(restrictions=[restriction], limit=4)
    assert [link(e, "self") for e in entries] == [f"{BASE}entries/{s.id}" for s in stored]
    updated = [e.findtext("atom:updated", namespaces=NS) for e in entries]
    assert updated == sorted(updated, reverse=True)  # newest first
    assert doc.findtext("atom:updated", namespaces=NS) == updated[0]
    for entry in entries:
        assert (RESTRICTION_SCHEME, restriction) in categories(entry)

    parsed = feedparser.parse(body, response_headers={"content-type": response.headers["Content-Type"]})
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert [e.id for e in parsed.entries] == [e.findtext("atom:id", namespaces=NS) for e in entries]
    assert all(e.summary and e.title and e.author == "csirt.example.org" for e in parsed.entries)


async def test_feed_entries_are_complete_rolie_entries(insider: TestClient, filled: Filled) -> None:
    doc = etree.fromstring(await get_ok(insider, "/feeds/partner", "application/atom+xml"))
    for element in doc.findall("atom:entry", NS):
        entry_id = int(link(element, "self").rsplit("/", 1)[1])
        stored = filled.store.entry(entry_id)
        assert stored is not None
        atom_id = element.findtext("atom:id", namespaces=NS)
        assert TAG_URI.fullmatch(atom_id), atom_id
        assert atom_id == f"tag:csirt.example.org,2024:{stored.incident.id}"
        assert element.findtext("atom:published", namespaces=NS) == stored.incident.report_time.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert element.findtext("atom:title", namespaces=NS) == (
            stored.incident.title or f"Incident {stored.incident.id} from csirt.example.org"
        )
        assert "signed by CN=csirt.example.org,O=Example" in element.findtext("atom:summary", namespaces=NS)
        assert categories(element) == {
            (INFO_TYPE_SCHEME, "incident"),
            (RESTRICTION_SCHEME, "partner"),
            (PURPOSE_SCHEME, stored.incident.purpose),
        }
        assert link(element, "collection") == f"{BASE}feeds/partner"
        content = element.find("atom:content", NS)
        assert content is not None and content.get("type") == "application/xml" and len(content) == 0
        assert content.get("src") == f"{BASE}entries/{entry_id}/iodef.xml"
        fmt = element.find("rolie:format", NS)
        assert fmt is not None
        assert fmt.get("ns") == f"urn:ietf:params:xml:ns:iodef-{stored.version}"
        props = {p.get("name"): p.get("value") for p in element.findall("rolie:property", NS)}
        assert props["urn:ietf:params:rolie:property:content-id"] == stored.incident.id
        assert props["urn:ietf:params:rolie:property:content-published-date"].startswith("2024-05-")
        assert props["urn:xmppbridge:property:signer"] == "CN=csirt.example.org,O=Example"
        assert props["urn:xmppbridge:property:signer-fingerprint"] == stored.signer_fingerprint
        assert props["urn:xmppbridge:property:source"] == (
            f"xmpp:pubsub.a.test?;node=iodef/partner/other;item={stored.item_id}"
        )


async def test_paging_walk_visits_every_entry_once(
    insider: TestClient, filled: Filled, schemas: AtomSchemas
) -> None:
    url: str | None = f"{BASE}feeds/public"
    seen: list[str] = []
    pages: list[str] = []
    last = None
    while url is not None:
        doc = schemas.check_atom(await get_ok(insider, url, "application/atom+xml"))
        assert feedparser.parse(etree.tostring(doc)).bozo == 0
        assert link(doc, "self") == url
        assert link(doc, "first") == f"{BASE}feeds/public"
        last = last or link(doc, "last")
        assert link(doc, "last") == last
        assert link(doc, "prev") is None  # we emit RFC 5005's "previous"
        if pages:
            assert link(doc, "previous") == pages[-1]
        else:
            assert link(doc, "previous") is None
        pages.append(url)
        seen += [link(e, "self") for e in doc.findall("atom:entry", NS)]
        url = link(doc, "next")
    total = PER_RESTRICTION + EXTRA_PUBLIC
    assert len(pages) == -(-total // 4) == 3
    assert pages[-1] == last == f"{BASE}feeds/public?page=3"
    assert sorted(seen) == sorted(f"{BASE}entries/{i}" for i in filled.ids["public"])
    assert len(seen) == len(set(seen)) == total


async def test_page_out_of_range_or_malformed(insider: TestClient) -> None:
    assert (await insider.get("/feeds/public?page=4")).status == 404
    assert (await insider.get("/feeds/partner?page=2")).status == 404
    for bad in ("0", "-1", "x", "1.5", "", "٣"):
        assert (await insider.get("/feeds/public", params={"page": bad})).status == 400, bad
    assert (await insider.get("/feeds/public?page=1")).status == 200


async def test_empty_feed_is_valid(tmp_path: Path, schemas: AtomSchemas) -> None:
    with Store(tmp_path / "empty.sqlite") as store:
        client = await _client(store)
        try:
            before = datetime.now(UTC).replace(microsecond=0)
            body = await get_ok(client, "/feeds/public", "application/atom+xml")
            doc = schemas.check_atom(body)
            assert doc.findall("atom:entry", NS) == []
            updated = datetime.fromisoformat(doc.findtext("atom:updated", namespaces=NS))
            assert updated >= before
            assert link(doc, "last") == link(doc, "first") == f"{BASE}feeds/public"
            assert link(doc, "next") is None
            assert feedparser.parse(body).bozo == 0
        finally:
            await client.close()


# -- entries -------------------------------------------------------------------------------------------


async def test_each_entry_validates_standalone(
    insider: TestClient, filled: Filled, schemas: AtomSchemas
) -> None:
    for restriction, ids in filled.ids.items():
        for entry_id in ids:
            response = await insider.get(f"/entries/{entry_id}")
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/atom+xml;type=entry;charset=utf-8"
            doc = schemas.check_atom(await response.read())
            assert doc.tag == f"{{{ATOM}}}entry"
            assert link(doc, "self") == f"{BASE}entries/{entry_id}"
            assert link(doc, "collection") == f"{BASE}feeds/{restriction}"  # RFC 8322 §6.2.5
            assert (INFO_TYPE_SCHEME, "incident") in categories(doc)


async def test_iodef_document_is_returned_as_stored(insider: TestClient, filled: Filled) -> None:
    for entry_id, stored in filled.xml.items():
        doc = etree.fromstring(await get_ok(insider, f"/entries/{entry_id}", "application/atom+xml"))
        src = doc.find("atom:content", NS).get("src")
        response = await insider.get(path_of(src))
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/xml"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert await response.read() == stored


async def test_odd_bytes_are_served_untouched(filled: Filled, insider: TestClient) -> None:
    raw = b'<?xml version="1.0" encoding="ISO-8859-1"?>\r\n<x>\xe9</x>\r\n'
    filled.store.upsert_entry(
        service="s",
        node="n",
        item_id="odd",
        origin="remote",
        incident=make_incident(99, "public"),
        version="2.0",
        xml=raw,
        signer_subject="",
        signer_fingerprint="",
    )
    entry = filled.store.find_entry("s", "n", "odd")
    assert await get_ok(insider, f"/entries/{entry.id}/iodef.xml", "application/xml") == raw


# -- access --------------------------------------------------------------------------------------------


async def test_anonymous_sees_only_public(
    anonymous: TestClient, filled: Filled, schemas: AtomSchemas
) -> None:
    doc = schemas.check_atom(await get_ok(anonymous, "/feeds/public", "application/atom+xml"))
    assert len(doc.findall("atom:entry", NS)) == PER_RESTRICTION + EXTRA_PUBLIC  # page size 50
    assert link(doc, "next") is None
    for restriction in RESTRICTIONS:
        feed_status = (await anonymous.get(f"/feeds/{restriction}")).status
        assert feed_status == (200 if restriction == "public" else 404)
        for entry_id in filled.ids[restriction]:
            expected = 200 if restriction == "public" else 404
            assert (await anonymous.get(f"/entries/{entry_id}")).status == expected
            assert (await anonymous.get(f"/entries/{entry_id}/iodef.xml")).status == expected


async def test_need_to_know_becomes_visible_when_allowed(filled: Filled) -> None:
    entry_id = filled.ids["need-to-know"][0]
    anonymous = await _client(filled.store)
    widened = await _client(filled.store, anonymous_restrictions={"public", "need-to-know"})
    try:
        hidden = await anonymous.get(f"/entries/{entry_id}")
        missing = await anonymous.get("/entries/999999")
        assert hidden.status == missing.status == 404
        assert await hidden.read() == await missing.read()  # nothing tells hidden from absent
        assert (await widened.get(f"/entries/{entry_id}")).status == 200
        assert (await widened.get(f"/entries/{entry_id}/iodef.xml")).status == 200
        assert (await widened.get("/feeds/need-to-know")).status == 200
        assert (await widened.get("/feeds/private")).status == 404
        service = await (await widened.get("/.well-known/rolie/servicedocument")).read()
        assert b"feeds/need-to-know" in service and b"feeds/partner" not in service
    finally:
        await anonymous.close()
        await widened.close()


async def test_entry_with_a_narrower_part_is_filed_narrower(filled: Filled, schemas: AtomSchemas) -> None:
    mixed = make_incident(77, "public", narrowest_restriction="need-to-know")
    filled.store.upsert_entry(
        service="s",
        node="iodef/public/other",
        item_id="mixed",
        origin="remote",
        incident=mixed,
        version="2.0",
        xml=b"<secret/>",
        signer_subject="",
        signer_fingerprint="",
    )
    entry = filled.store.find_entry("s", "iodef/public/other", "mixed")
    anonymous = await _client(filled.store)
    widened = await _client(filled.store, anonymous_restrictions={"public", "need-to-know"})
    try:
        assert (await anonymous.get(f"/entries/{entry.id}")).status == 404
        assert (await anonymous.get(f"/entries/{entry.id}/iodef.xml")).status == 404
        public = await get_ok(anonymous, "/feeds/public", "application/atom+xml")
        assert f"entries/{entry.id}<".encode() not in public and b"2024-0077" not in public
        doc = schemas.check_atom(await get_ok(widened, f"/entries/{entry.id}", "application/atom+xml"))
        assert (RESTRICTION_SCHEME, "need-to-know") in categories(doc)
        assert link(doc, "collection") == f"{BASE}feeds/need-to-know"
        assert "Incident marked public" in doc.findtext("atom:summary", namespaces=NS)
        feed = await get_ok(widened, "/feeds/need-to-know", "application/atom+xml")
        assert f"{BASE}entries/{entry.id}".encode() in feed
    finally:
        await anonymous.close()
        await widened.close()


async def test_deleted_entries_disappear(insider: TestClient, filled: Filled) -> None:
    entry_id = filled.ids["public"][0]
    entry = filled.store.entry(entry_id)
    assert filled.store.mark_deleted(entry.service, entry.node, entry.item_id)
    assert (await insider.get(f"/entries/{entry_id}")).status == 404
    assert (await insider.get(f"/entries/{entry_id}/iodef.xml")).status == 404
    seen = []
    for page in (1, 2, 3):
        doc = etree.fromstring(await get_ok(insider, f"/feeds/public?page={page}", "application/atom+xml"))
        seen += [link(e, "self") for e in doc.findall("atom:entry", NS)]
    assert f"{BASE}entries/{entry_id}" not in seen and len(seen) == PER_RESTRICTION + EXTRA_PUBLIC - 1


# -- odds and ends -------------------------------------------------------------------------------------


async def test_root_is_405(anonymous: TestClient) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = await anonymous.request(method, "/")
        assert response.status == 405, method
        assert "Allow" in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/nothing",
        "/feeds/bogus",
        "/feeds/",
        "/feeds/white",
        "/entries/999999",
        "/entries/abc",
        "/entries/99999999999999999999999",
        "/entries/1/other.xml",
        "/.well-known/rolie/other",
    ],
)
async def test_unknown_is_404(insider: TestClient, path: str) -> None:
    assert (await insider.get(path)).status == 404


async def test_feeds_are_read_only(insider: TestClient) -> None:
    assert (await insider.post("/feeds/public", data=b"<entry/>")).status == 405


async def test_healthz(anonymous: TestClient, filled: Filled) -> None:
    filled.store.add_reject(
        source="xmpp",
        service=None,
        node=None,
        item_id=None,
        reason="malformed-xml",
        message="broken",
        raw=b"<",
    )
    response = await anonymous.get("/healthz")
    assert response.status == 200
    assert await response.json() == {
        "status": "ok",
        "entries": len(RESTRICTIONS) * PER_RESTRICTION + EXTRA_PUBLIC,
        "rejects": 1,
    }


async def test_healthz_takes_extra_fields_from_the_shell(filled: Filled) -> None:
    app = make_app(filled.store, FeedSettings(base_url=BASE), health=lambda: {"ready": True, "outbox": 0})
    async with TestClient(TestServer(app)) as client:
        body = await (await client.get("/healthz")).json()
    assert body["ready"] is True and body["outbox"] == 0 and body["status"] == "ok"


def test_settings_validation() -> None:
    assert FeedSettings(base_url=BASE).anonymous_restrictions == frozenset({"public"})
    names = ["public", "partner"]  # e.g. straight from YAML
    from_list = FeedSettings(base_url=BASE, anonymous_restrictions=names)  # type: ignore[arg-type]
    assert from_list.anonymous_restrictions == frozenset(names)
    with pytest.raises(ValueError, match="amber"):
        FeedSettings(base_url=BASE, anonymous_restrictions=frozenset({"amber"}))
    with pytest.raises(ValueError):
        FeedSettings(base_url=BASE, page_size=0)
    with pytest.raises(ValueError):
        FeedSettings(base_url="feeds.example.org")
