"""The ROLIE feed of running bridges over HTTP, with writes going through real XMPP federation.

POST, PUT and DELETE at A's AtomPub collection travel as publish/retract over s2s to B, whose feed
shows, updates and marks deleted; B's documents validate against the RELAX NG schemas and parse in
feedparser; paging and archives are walked; every search parameter is tried; the access matrix shows
no leak. Every incident here has its own IncidentID prefix, since other tests share the consortium.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
import uuid
from contextlib import closing
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from tests.integration import eventually
from tests.test_feed_support import NS, AtomSchemas, iodef2, link
from xmppbridge.demo.consortium import Consortium, Member
from xmppbridge.policy.nodes import RESTRICTIONS
from xmppbridge.store import Store

pytestmark = pytest.mark.integration
XML = {"Content-Type": "application/xml"}
NAME = "csirt.a.test"  # IncidentID name A's signing certificate speaks for
ANONYMOUS = None


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def doc(self) -> etree._Element:
        return etree.fromstring(self.body)


def http(
    member: Member,
    method: str,
    path_or_url: str,
    *,
    user: str | None = "analyst",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    url = path_or_url if path_or_url.startswith("http") else member.feed_url + path_or_url.lstrip("/")
    auth = member.basic_auth(user) if user else {}
    request = urllib.request.Request(url, data=body, method=method, headers={**auth, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(member: Member, restriction: str, document: bytes) -> Reply:
    reply = http(member, "POST", f"feeds/{restriction}", body=document, headers=XML)
    assert reply.status == 201, reply.body
    return reply


def at_b(federation: Consortium, incident_id: str, restriction: str) -> Reply | None:
    """B's entry document for an incident, once mirrored (looked up by search, then read)."""
    found = http(federation["b"], "GET", f"search?incident={incident_id}").doc.findall("atom:entry", NS)
    if not found:
        return None
    entry = http(federation["b"], "GET", link(found[0], "self"))
    assert entry.status == 200
    assert link(entry.doc, "collection") == federation["b"].feed_url + f"feeds/{restriction}"
    return entry


# -- the write path through federation -----------------------------------------------------------------


def test_post_put_delete_travel_to_the_peer(federation: Consortium, schemas: AtomSchemas) -> None:
    a, b = federation["a"], federation["b"]
    incident = unique("FED")
    created = post(
        a,
        "need-to-know",
        iodef2(incident, restriction="need-to-know", name=NAME, description="First assessment"),
    )
    location, etag = created.headers["Location"], created.headers["ETag"]
    assert location.startswith(a.feed_url + "entries/")
    schemas.check_atom(created.body)

    mirrored = eventually(lambda: at_b(federation, incident, "need-to-know"), what=f"{incident} at B").doc
    assert mirrored.findtext("atom:title", namespaces=NS) == "First assessment"
    b_entry = link(mirrored, "self")

    # PUT: a new version at A reaches B, whose history keeps the first one
    assert (
        http(
            a,
            "PUT",
            location,
            body=iodef2(incident, restriction="need-to-know", name=NAME, description="stale"),
            headers={**XML, "If-Match": '"x"'},
        ).status
        == 412
    )
    updated = http(
        a,
        "PUT",
        location,
        body=iodef2(incident, restriction="need-to-know", name=NAME, description="Revised assessment"),
        headers={**XML, "If-Match": etag},
    )
    assert updated.status == 200, updated.body
    eventually(
        lambda: http(b, "GET", b_entry).doc.findtext("atom:title", namespaces=NS) == "Revised assessment",
        what="the new version at B",
    )
    history = http(b, "GET", link(http(b, "GET", b_entry).doc, "version-history"))
    schemas.check_atom(history.body)
    assert [e.findtext("atom:title", namespaces=NS) for e in history.doc.findall("atom:entry", NS)] == [
        "Revised assessment",
        "First assessment",
    ]
    first_version = history.doc.findall("atom:entry", NS)[1].find("atom:content", NS).get("src")
    assert b"First assessment" in http(b, "GET", first_version).body

    # DELETE: retracted from A's node; B marks it deleted
    assert http(a, "DELETE", location).status == 204
    assert http(a, "GET", location).status == 410
    eventually(lambda: http(b, "GET", b_entry).status == 410, what="the retraction at B")
    feed = http(b, "GET", "feeds/need-to-know")
    schemas.check_atom(feed.body)
    refs = [t.get("ref") for t in feed.doc.findall("at:deleted-entry", NS)]
    assert mirrored.findtext("atom:id", namespaces=NS) in refs


def test_write_refusals_on_a_running_bridge(federation: Consortium) -> None:
    a = federation["a"]
    document = iodef2(unique("REF"), restriction="private", name=NAME)
    assert http(a, "POST", "feeds/public", body=document, headers=XML).status == 400  # wrong collection
    assert (
        http(a, "POST", "feeds/private", body=document, headers={"Content-Type": "text/plain"}).status == 415
    )
    invalid = http(
        a, "POST", "feeds/private", body=document.replace(b"GenerationTime", b"Generated"), headers=XML
    )
    assert invalid.status == 400 and invalid.body.startswith(b"schema-invalid:")
    assert http(a, "POST", "feeds/private", body=document, headers=XML, user=None).status == 401
    assert http(a, "POST", "feeds/public", body=document, headers=XML, user="member").status == 403
    assert http(a, "GET", "/").status == 405


def test_a_foreign_incident_id_is_refused_at_publish_by_the_cli_and_atompub(
        federation: Consortium, tmp_path: Path) -> None:
    """A's certificate speaks for a.test: a csirt.b.test IncidentID, which B would quarantine as
    domain-not-allowed, is refused by both entry points of A with that reason, and never reaches B."""
    a, b = federation["a"], federation["b"]
    by_http, by_cli, after = unique("FOREIGN-HTTP"), unique("FOREIGN-CLI"), unique("FOREIGN-AFTER")
    reply = http(a, "POST", "feeds/public", body=iodef2(by_http, name="csirt.b.test"), headers=XML)
    assert reply.status == 400, reply.body
    assert reply.body.startswith(b"domain-not-allowed: IncidentID name 'csirt.b.test'")
    assert b"signing.domains" in reply.body

    foreign = tmp_path / "foreign.xml"
    foreign.write_bytes(iodef2(by_cli, name="csirt.b.test"))
    result = federation.publish("a", foreign, timeout=10)
    assert result.returncode == 1 and "rejected: domain-not-allowed: " in result.stderr, result.stderr
    assert "published" not in result.stdout

    # A's own documents still travel; once this one is at B, the refused ones would have been too.
    post(a, "public", iodef2(after, name=NAME))
    eventually(lambda: at_b(federation, after, "public"), what="the document published after the refusals")
    with closing(Store(b.workdir / "data" / "b.sqlite")) as store:
        held = [r.item_id for r in store.rejects(limit=10_000)]
    assert not [item for item in held if by_http in item or by_cli in item]
    assert at_b(federation, by_http, "public") is None and at_b(federation, by_cli, "public") is None


# -- documents, paging, archives, search ---------------------------------------------------------------


@pytest.fixture(scope="module")
def published(federation: Consortium) -> dict[str, str]:
    """A handful of incidents published at A through AtomPub and mirrored at B: name -> IncidentID."""
    a = federation["a"]
    tag = unique("S")
    word = "zq" + tag.split("-")[1]
    incidents = {
        "public-1": (
            iodef2(
                f"{tag}-1",
                name=NAME,
                description=f"{word} phishing",
                detect="2031-01-01T10:00:00Z",
                report="2031-01-02T00:00:00Z",
                alternative=f"{tag}-ALT",
            ),
            "public",
        ),
        "public-2": (
            iodef2(
                f"{tag}-2",
                name=NAME,
                purpose="watch",
                description="scan",
                related=f"{tag}-1",
                start="2031-02-01T00:00:00Z",
                end="2031-02-02T00:00:00Z",
            ),
            "public",
        ),
        "partner": (
            iodef2(
                f"{tag}-3",
                restriction="partner",
                name=NAME,
                description=f"{word} partner",
                generated="2031-03-01T00:00:00Z",
            ),
            "partner",
        ),
        "private": (
            iodef2(f"{tag}-4", restriction="private", name=NAME, description=f"{word} private"),
            "private",
        ),
    }
    for document, restriction in incidents.values():
        post(a, restriction, document)
    ids = {name: f"{tag}-{i}" for i, name in enumerate(incidents, start=1)}
    for name, incident in ids.items():
        eventually(lambda i=incident, r=incidents[name][1]: at_b(federation, i, r), what=f"{incident} at B")
    return {**ids, "word": word, "tag": tag}


def test_every_document_validates_and_parses(
    federation: Consortium, published: dict[str, str], schemas: AtomSchemas
) -> None:
    b = federation["b"]
    service = http(b, "GET", ".well-known/rolie/servicedocument")
    schemas.check_service(service.body)
    schemas.check_categories(http(b, "GET", ".well-known/rolie/categorydocument").body)
    for collection in service.doc.iter("{http://www.w3.org/2007/app}collection"):
        feed = http(b, "GET", collection.get("href"))
        schemas.check_atom(feed.body)
        parsed = feedparser.parse(feed.body)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        for element in feed.doc.findall("atom:entry", NS):
            entry = http(b, "GET", link(element, "self"))
            schemas.check_atom(entry.body)
            assert http(b, "GET", element.find("atom:content", NS).get("src")).status == 200
    description = http(b, "GET", "search/description")
    assert description.status == 200 and b"OpenSearchDescription" in description.body


def test_paging_walk_on_a_running_bridge(
    federation: Consortium, published: dict[str, str], schemas: AtomSchemas
) -> None:
    b = federation["b"]
    url: str | None = b.feed_url + "feeds/public?count=2"
    seen: list[str] = []
    while url is not None:
        page = http(b, "GET", url)
        schemas.check_atom(page.body)
        assert feedparser.parse(page.body).bozo == 0
        seen += [link(e, "self") for e in page.doc.findall("atom:entry", NS)]
        url = link(page.doc, "next")
    with closing(Store(b.workdir / "data" / "b.sqlite")) as store:  # what B holds, read beside the bridge
        stored = store.entries(restrictions=["public"], limit=100_000)
    assert len(seen) == len(set(seen)) == len(stored)
    assert set(seen) == {f"{b.feed_url}entries/{entry.id}" for entry in stored}


def test_archives_on_a_running_bridge(federation: Consortium, schemas: AtomSchemas) -> None:
    """RFC 5005 archives (archive_size 5 in this consortium) at A, where AtomPub writes land at once:
    linked from the current feed, complete, and unchanged by later changes (304 on their old ETag)."""
    a = federation["a"]
    tag = unique("ARC")
    for n in range(6):
        post(a, "default", iodef2(f"{tag}-{n}", restriction="default", name=NAME))
    archive_url = link(http(a, "GET", "feeds/default").doc, "prev-archive")
    assert archive_url is not None
    etags = {}
    while archive_url is not None:
        archive = http(a, "GET", archive_url)
        schemas.check_atom(archive.body)
        assert feedparser.parse(archive.body).bozo == 0
        assert archive.doc.find("fh:archive", NS) is not None
        assert (
            len(archive.doc.findall("atom:entry", NS)) + len(archive.doc.findall("at:deleted-entry", NS)) == 5
        )
        etags[archive_url] = archive.headers["ETag"]
        archive_url = link(archive.doc, "prev-archive")
    post(a, "default", iodef2(f"{tag}-new", restriction="default", name=NAME))
    for url, etag in etags.items():
        assert http(a, "GET", url, headers={"If-None-Match": etag}).status == 304


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q={word}", ["public-1", "partner", "private"]),
        ("q={word}&category=urn:ietf:params:rolie:category:csirt:iodef:restriction+partner", ["partner"]),
        (
            "q={word}&category=urn:ietf:params:rolie:category:csirt:iodef:purpose+mitigation",
            ["public-1", "partner", "private"],
        ),
        ("incident={tag}-2", ["public-2"]),
        ("alternative={tag}-ALT", ["public-1"]),
        ("related={tag}-1", ["public-2"]),
        ("detecttime=2031-01-01", ["public-1"]),
        ("reporttime=2031-01-01/2031-01-03", ["public-1"]),
        ("starttime=2031-02-01T00:00:00Z", ["public-2"]),
        ("endtime=2031-02-02/2031-02-03", ["public-2"]),
        ("generationtime=2031-03-01", ["partner"]),
    ],
)
def test_each_search_parameter_on_a_running_bridge(
    federation: Consortium, published: dict[str, str], query: str, expected: list[str]
) -> None:
    reply = http(federation["b"], "GET", "search?" + query.format(**published))
    assert reply.status == 200, reply.body
    found = sorted(
        p.get("value")
        for p in reply.doc.findall(
            "atom:entry/rolie:property[@name='urn:ietf:params:rolie:property:content-id']", NS
        )
    )
    assert found == sorted(published[name] for name in expected)


def test_conditional_get_on_a_running_bridge(federation: Consortium, published: dict[str, str]) -> None:
    b = federation["b"]
    for path in ("feeds/public", link(at_b(federation, published["public-1"], "public").doc, "self")):
        first = http(b, "GET", path)
        assert first.headers["ETag"] and first.headers["Last-Modified"]
        assert http(b, "GET", path, headers={"If-None-Match": first.headers["ETag"]}).status == 304
        assert (
            http(b, "GET", path, headers={"If-Modified-Since": first.headers["Last-Modified"]}).status == 304
        )


# -- the access matrix ---------------------------------------------------------------------------------

READERS = {
    ANONYMOUS: {"public"},
    "outsider": {"public"},
    "member": {"public", "partner", "need-to-know", "default"},
}


@pytest.fixture(scope="module")
def one_per_restriction(federation: Consortium) -> tuple[str, dict[str, tuple[str, str]]]:
    """A tag, and restriction -> (IncidentID, B's entry URL) of incidents published at A with that tag."""
    tag = unique("ACL")
    for restriction in RESTRICTIONS:
        post(
            federation["a"],
            restriction,
            iodef2(f"{tag}-{restriction}", restriction=restriction, name=NAME, description=f"{tag} words"),
        )
    found = {}
    for restriction in RESTRICTIONS:
        entry = eventually(
            lambda r=restriction: at_b(federation, f"{tag}-{r}", r), what=f"{restriction} at B"
        )
        found[restriction] = (f"{tag}-{restriction}", link(entry.doc, "self"))
    return tag, found


@pytest.mark.parametrize("reader", list(READERS), ids=lambda r: r or "anonymous")
def test_access_matrix_on_a_running_bridge(
    federation: Consortium, one_per_restriction: tuple[str, dict[str, tuple[str, str]]], reader: str | None
) -> None:
    b = federation["b"]
    visible = READERS[reader]
    tag, incidents = one_per_restriction
    service = http(b, "GET", ".well-known/rolie/servicedocument", user=reader)
    searched = http(b, "GET", f"search?q={tag}", user=reader)
    assert service.status == searched.status == 200
    for restriction, (incident, entry_url) in incidents.items():
        allowed = restriction in visible
        assert (f"feeds/{restriction}".encode() in service.body) == allowed, (reader, restriction)
        assert (incident.encode() in searched.body) == allowed, (reader, restriction)
        feed = http(b, "GET", f"feeds/{restriction}?count=500", user=reader)
        entry = http(b, "GET", entry_url, user=reader)
        if allowed:
            assert feed.status == entry.status == 200 and incident.encode() in feed.body
            iodef = http(b, "GET", entry.doc.find("atom:content", NS).get("src"), user=reader)
            assert iodef.status == 200 and incident.encode() in iodef.body
        else:
            assert feed.status == (401 if reader is None else 404) and incident.encode() not in feed.body
            assert entry.status == 404 and incident.encode() not in entry.body
            iodef = http(b, "GET", entry_url + "/iodef.xml", user=reader)
            assert iodef.status == 404 and incident.encode() not in iodef.body
    # the analyst reads everything, as the demo's does
    assert all(http(b, "GET", url).status == 200 for _, url in incidents.values())


def test_demo_credentials_file(federation: Consortium) -> None:
    lines = (federation.workdir / "credentials").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["a analyst", "b analyst", "a operator", "b operator"]
    for line in lines:
        name, credentials = line.split()
        user, password = credentials.split(":", 1)
        header = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
        # the analyst reads everything; the operator sees the dashboard and reads only what anyone may
        private = http(federation[name], "GET", "feeds/private", user=None, headers=header).status
        dashboard = http(federation[name], "GET", "dashboard", user=None, headers=header).status
        assert (private, dashboard) == ((200, 404) if user == "analyst" else (404, 200))
