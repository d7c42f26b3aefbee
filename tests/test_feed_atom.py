"""The pure Atom renderer: identifiers, dates, text and structure, without HTTP or schemas."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from lxml import etree

from xmppbridge.feed import atom
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.model import Incident
from xmppbridge.store import Entry

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
URLS = FeedUrls("http://127.0.0.1:8081")
NS = {"atom": atom.ATOM_NS, "app": atom.APP_NS, "rolie": atom.ROLIE_NS, "fh": atom.FH_NS, "at": atom.AT_NS,
      "os": atom.OPENSEARCH_NS}
TAG_URI = re.compile(
    r"tag:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*,\d{4}:"
    r"(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-F]{2})*"
)


def incident(**changes: object) -> Incident:
    fields: dict[str, object] = {
        "id_name": "csirt.example.org",
        "id": "2024-0001",
        "instance": None,
        "restriction_raw": "public",
        "restriction": "public",
        "purpose": "reporting",
        "report_time": T0,
    }
    return Incident(**(fields | changes))  # type: ignore[arg-type]


def entry(inc: Incident | None = None, **changes: object) -> Entry:
    inc = inc or incident()
    fields: dict[str, object] = {
        "id": 7,
        "service": "pubsub.a.test",
        "node": "iodef/public/reporting",
        "item_id": "abc",
        "origin": "remote",
        "incident": inc,
        "version": "2.0",
        "xml": b"<x/>",
        "signer_subject": "CN=csirt.example.org",
        "signer_fingerprint": "ab" * 32,
        "received_at": T0 + timedelta(days=1),
        "updated_at": T0 + timedelta(days=2),
        "deleted": False,
        "published_at": inc.published_time,
    }
    return Entry(**(fields | changes))  # type: ignore[arg-type]


# -- atom:id -------------------------------------------------------------------------------------------


def test_tag_uri_for_a_plain_incident_id() -> None:
    assert atom.entry_atom_id(incident(), T0) == "tag:csirt.example.org,2024:2024-0001"


@pytest.mark.parametrize(
    ("ident", "instance", "specific"),
    [
        ("2024/0001", None, "2024%2F0001"),
        ("a b#c?d%e", None, "a%20b%23c%3Fd%25e"),
        ("Zwischenfall-ü", "teil 2", "Zwischenfall-%C3%BC/teil%202"),
        ("x", "a/b", "x/a%2Fb"),
        ("", None, ""),
    ],
)
def test_tag_uri_percent_encodes_the_specific_part(ident: str, instance: str | None, specific: str) -> None:
    value = atom.entry_atom_id(incident(id=ident, instance=instance), T0)
    assert value == f"tag:csirt.example.org,2024:{specific}"
    assert TAG_URI.fullmatch(value)


def test_tag_uri_authority_is_normalised_and_year_falls_back() -> None:
    assert (
        atom.entry_atom_id(incident(id_name="CSIRT.Example.ORG."), None)
        == "tag:csirt.example.org,2000:2024-0001"
    )
    assert (
        atom.entry_atom_id(incident(id_name="cért.example"), T0) == "tag:xn--crt-bma.example,2024:2024-0001"
    )
    plus14 = timezone(timedelta(hours=14))
    new_year = datetime(2025, 1, 1, 1, 0, tzinfo=plus14)  # still 2024 in UTC
    assert atom.entry_atom_id(incident(), new_year).startswith("tag:csirt.example.org,2024:")


@pytest.mark.parametrize(
    "name", ["not a dns name", "csirt_example.org", "", "-bad.example", "a..b", "x" * 64]
)
def test_non_dns_names_get_a_stable_urn_uuid(name: str) -> None:
    value = atom.entry_atom_id(incident(id_name=name), T0)
    assert value.startswith("urn:uuid:") and uuid.UUID(value[9:]).version == 5
    assert value == atom.entry_atom_id(incident(id_name=name), T0 + timedelta(days=400))  # year-independent
    assert value != atom.entry_atom_id(incident(id_name=name, id="other"), T0)


def test_feed_ids_are_stable_and_distinct() -> None:
    first = atom.feed_atom_id(URLS, "public")
    assert first == atom.feed_atom_id(FeedUrls("http://127.0.0.1:8081/"), "public")
    assert first == uuid.uuid5(uuid.NAMESPACE_URL, "http://127.0.0.1:8081/feeds/public").urn
    assert first != atom.feed_atom_id(URLS, "partner")
    assert first != atom.feed_atom_id(FeedUrls("http://other.example/"), "public")


# -- dates and text ------------------------------------------------------------------------------------


def test_rfc3339() -> None:
    assert atom.rfc3339(T0) == "2024-05-01T12:00:00Z"
    assert atom.rfc3339(T0.replace(microsecond=120000)) == "2024-05-01T12:00:00.12Z"
    assert (
        atom.rfc3339(datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
        == "2024-05-01T12:00:00Z"
    )
    assert atom.rfc3339(datetime(2024, 5, 1, 12, 0)) == "2024-05-01T12:00:00Z"  # naive = UTC
    assert atom.rfc3339(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02T03:04:05Z"
    assert atom.rfc3339(datetime(2024, 5, 1, 12, 0, 0, 120)) == "2024-05-01T12:00:00.00012Z"
    assert atom.rfc3339(datetime(2024, 5, 1, 12, 0, 0, 100000, tzinfo=timezone(timedelta(hours=-3)))) == (
        "2024-05-01T15:00:00.1Z")


def test_title_falls_back_and_is_one_line() -> None:
    assert atom.entry_title(incident()) == "Incident 2024-0001 from csirt.example.org"
    assert atom.entry_title(incident(title="  ")) == "Incident 2024-0001 from csirt.example.org"
    assert atom.entry_title(incident(title="Port\n   scan\tfrom 192.0.2.1 ")) == "Port scan from 192.0.2.1"


def test_summary_names_restriction_purpose_times_and_signer() -> None:
    text = atom.entry_summary(
        entry(
            incident(restriction_raw="amber", restriction="need-to-know", detect_time=T0 - timedelta(hours=1))
        )
    )
    assert text.startswith("Restriction need-to-know (marked amber); purpose reporting;")
    assert "reported 2024-05-01T12:00:00Z" in text and "detected 2024-05-01T11:00:00Z" in text
    assert "generated" not in text
    assert text.endswith(f"signed by CN=csirt.example.org (SHA-256 {'ab' * 32}).")
    assert "unknown signer" in atom.entry_summary(entry(signer_subject="", signer_fingerprint=""))


def test_text_xml_cannot_carry_is_replaced_not_fatal() -> None:
    body = atom.entry_document(
        entry(signer_subject="CN=evil\x00\x1b[31m", incident=incident(title="t\x0bx")), URLS
    )
    doc = etree.fromstring(body)
    assert doc.findtext("atom:title", namespaces=NS) == "t x"  # vertical tab is whitespace to str.split
    props = {p.get("name"): p.get("value") for p in doc.findall("rolie:property", NS)}
    assert props[atom.PROPERTY_SIGNER] == "CN=evil\ufffd\ufffd[31m"


@pytest.mark.parametrize("nasty", ['a & b <c> "d" \'e\' ]]>', "cr\rlf\n tab\t", "ünï©ødé 😀"])
def test_markup_in_untrusted_text_comes_back_unchanged(nasty: str) -> None:
    """Entries are written as text, so every untrusted value must be escaped, in elements and attributes
    alike (an attribute value keeps its CR, LF and tab only as character references)."""
    inc = incident(id_name=nasty, title="t " + nasty.strip(), related_ids=((nasty, nasty),))
    found = entry(inc, signer_subject=nasty, signer_fingerprint=nasty, item_id=nasty, node=nasty)
    bodies = [atom.entry_document(found, URLS), atom.feed_document(view(entries=[found], title=nasty), URLS,
                                                                   author=nasty)]
    for body in bodies:  # exactly what lxml writes for the same tree (escapes, quotes, declarations)
        assert etree.tostring(etree.fromstring(body), xml_declaration=True, encoding="UTF-8") == body
    for doc in (etree.fromstring(bodies[0]), etree.fromstring(bodies[1]).find("atom:entry", NS)):
        assert doc.findtext("atom:author/atom:name", namespaces=NS) == nasty
        assert doc.findtext("atom:title", namespaces=NS) == " ".join(("t " + nasty).split())
        assert nasty in doc.findtext("atom:summary", namespaces=NS)
        props = {p.get("name"): p.get("value") for p in doc.findall("rolie:property", NS)}
        assert props[atom.PROPERTY_SIGNER] == props[atom.PROPERTY_SIGNER_FINGERPRINT] == nasty
        assert props[atom.PROPERTY_SOURCE] == atom.source_uri(found)
        [related] = [link for link in doc.findall("atom:link", NS) if link.get("rel") == "related"]
        assert related.get("title") == f"{nasty} {nasty}"
        assert related.get("href") == URLS.search([("incident", nasty)])  # has & and = in it
    feed = etree.fromstring(atom.feed_document(view(title=nasty), URLS, author=nasty))
    assert feed.findtext("atom:title", namespaces=NS) == nasty
    assert feed.findtext("atom:author/atom:name", namespaces=NS) == nasty


# -- structure -----------------------------------------------------------------------------------------


def test_entry_structure() -> None:
    doc = etree.fromstring(atom.entry_document(entry(incident(purpose="ext-value"), revision=3), URLS))
    assert doc.nsmap == {None: atom.ATOM_NS, "rolie": atom.ROLIE_NS}
    assert doc.findtext("atom:published", namespaces=NS) == "2024-05-01T12:00:00Z"
    assert doc.findtext("atom:updated", namespaces=NS) == "2024-05-03T12:00:00Z"
    assert doc.findtext("atom:author/atom:name", namespaces=NS) == "csirt.example.org"
    terms = {(c.get("scheme"), c.get("term")) for c in doc.findall("atom:category", NS)}
    assert (atom.PURPOSE_SCHEME, "other") in terms  # ext-value is filed under other
    content = doc.find("atom:content", NS)
    # the document of this revision, so that archives keep pointing at what they describe
    assert content.attrib == {"type": "application/xml",
                              "src": "http://127.0.0.1:8081/entries/7/revisions/3/iodef.xml"}
    assert doc.find("rolie:format", NS).attrib == {"ns": "urn:ietf:params:xml:ns:iodef-2.0", "version": "2.0"}
    props = {p.get("name"): p.get("value") for p in doc.findall("rolie:property", NS)}
    assert props[atom.PROPERTY_REVISION] == "3"


def links(doc: etree._Element) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for element in doc.findall("atom:link", NS):
        found.setdefault(element.get("rel"), []).append((element.get("href"), element.get("type")))
    return found


def test_entry_links() -> None:
    related = incident(related_ids=(("csirt.example.org", "2023-99"), ("other.example", "X 1")))
    doc = etree.fromstring(atom.entry_document(entry(related, origin="remote"), URLS))
    base = "http://127.0.0.1:8081/"
    assert links(doc) == {
        "self": [(base + "entries/7", atom.ENTRY_MEDIA_TYPE)],
        "alternate": [(base + "entries/7", "text/html")],
        "collection": [(base + "feeds/public", atom.FEED_MEDIA_TYPE)],
        "service": [(base + ".well-known/rolie/servicedocument", atom.SERVICE_MEDIA_TYPE)],
        "version-history": [(base + "entries/7/history", atom.FEED_MEDIA_TYPE)],
        "search": [(base + "search/description", atom.OPENSEARCH_MEDIA_TYPE)],
        "related": [(base + "search?incident=2023-99", atom.FEED_MEDIA_TYPE),
                    (base + "search?incident=X+1", atom.FEED_MEDIA_TYPE)],
    }
    assert [e.get("title") for e in doc.findall("atom:link[@rel='related']", NS)] == [
        "csirt.example.org 2023-99", "other.example X 1"]
    ours = etree.fromstring(atom.entry_document(entry(origin="local"), URLS))
    assert links(ours)["edit"] == [(base + "entries/7", atom.ENTRY_MEDIA_TYPE)]  # only our own are editable


def test_entry_without_published_time_omits_published() -> None:
    inc = incident(report_time=None)
    doc = etree.fromstring(atom.entry_document(entry(inc, version="1.0"), URLS))
    assert doc.find("atom:published", NS) is None
    assert doc.findtext("atom:id", namespaces=NS) == "tag:csirt.example.org,2000:2024-0001"
    assert doc.find("rolie:format", NS).get("ns") == "urn:ietf:params:xml:ns:iodef-1.0"
    names = [p.get("name") for p in doc.findall("rolie:property", NS)]
    assert atom.PROPERTY_CONTENT_PUBLISHED not in names


def view(**changes: object) -> atom.FeedView:
    values: dict[str, object] = {"atom_id": "urn:x", "title": "t", "self_url": URLS.feed("public"),
                                 "updated": T0, "entries": [entry(), entry(id=8)]}
    return atom.FeedView(**(values | changes))  # type: ignore[arg-type]


def test_entries_in_a_feed_do_not_redeclare_namespaces() -> None:
    body = atom.feed_document(view(), URLS, author="us")
    assert body.count(b"xmlns=") == 1 and body.count(b"xmlns:rolie=") == 1


def test_deleted_entries_become_tombstones() -> None:
    gone = entry(id=8, deleted=True, updated_at=T0 + timedelta(days=9))
    doc = etree.fromstring(atom.feed_document(view(entries=[entry(), gone]), URLS, author="us"))
    assert len(doc.findall("atom:entry", NS)) == 1
    [tombstone] = doc.findall("at:deleted-entry", NS)
    assert tombstone.attrib == {"ref": "tag:csirt.example.org,2024:2024-0001", "when": "2024-05-10T12:00:00Z"}


def test_feed_marks_archives_complete_feeds_and_search_results() -> None:
    archived = etree.fromstring(atom.feed_document(view(archive=True, links=[atom.Link("current", "u")]),
                                                   URLS, author="us"))
    assert archived.find("fh:archive", NS) is not None and archived.find("fh:complete", NS) is None
    assert links(archived)["current"] == [("u", atom.FEED_MEDIA_TYPE)]
    complete = etree.fromstring(atom.feed_document(view(complete=True), URLS, author="us"))
    assert complete.find("fh:complete", NS) is not None
    found = etree.fromstring(atom.feed_document(view(search=atom.SearchInfo(42, 11, 10)), URLS, author="us"))
    names = ("totalResults", "startIndex", "itemsPerPage")
    assert [found.findtext(f"os:{n}", namespaces=NS) for n in names] == ["42", "11", "10"]
    uncounted = etree.fromstring(atom.feed_document(view(search=atom.SearchInfo(None, 1, 10)), URLS,
                                                    author="us"))
    assert uncounted.find("os:totalResults", NS) is None


def test_urls() -> None:
    urls = FeedUrls("https://x.example/rolie")
    assert urls.service_document() == "https://x.example/rolie/.well-known/rolie/servicedocument"
    assert urls.category_document() == "https://x.example/rolie/.well-known/rolie/categorydocument"
    assert urls.feed("need-to-know") == "https://x.example/rolie/feeds/need-to-know"
    assert urls.feed("public", before=30, count=5) == "https://x.example/rolie/feeds/public?before=30&count=5"
    assert urls.feed("public", after=0) == "https://x.example/rolie/feeds/public?after=0"
    assert urls.archive("public", 3) == "https://x.example/rolie/feeds/public/archive/3"
    assert urls.iodef(5) == "https://x.example/rolie/entries/5/iodef.xml"
    assert urls.revision(5, 2) == "https://x.example/rolie/entries/5/revisions/2/iodef.xml"
    assert urls.history(5) == "https://x.example/rolie/entries/5/history"
    assert urls.search([("q", "a b"), ("incident", "x&y")]) == "https://x.example/rolie/search?q=a+b&incident=x%26y"


def test_service_document_hides_empty_workspaces() -> None:
    doc = etree.fromstring(atom.service_document(URLS, {"private"}))
    assert [w.findtext("atom:title", namespaces=NS) for w in doc.findall("app:workspace", NS)] == [
        "Consortium"
    ]
    assert [c.get("href") for c in doc.iter(f"{{{atom.APP_NS}}}collection")] == [URLS.feed("private")]
    nothing = etree.fromstring(atom.service_document(URLS, set()))
    assert [w.findtext("atom:title", namespaces=NS) for w in nothing.findall("app:workspace", NS)] == [
        "Public"
    ]
    assert nothing.find(".//app:collection", NS) is None


def test_writable_collections_list_what_they_accept() -> None:
    doc = etree.fromstring(atom.service_document(URLS, {"public", "partner"}, {"partner"}))
    accepts = {c.get("href"): [a.text for a in c.findall("app:accept", NS)]
               for c in doc.iter(f"{{{atom.APP_NS}}}collection")}
    assert accepts == {URLS.feed("public"): [None], URLS.feed("partner"): list(atom.ACCEPTED_MEDIA_TYPES)}
