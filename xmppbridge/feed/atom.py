"""Atom / AtomPub / ROLIE rendering: pure functions from store entries to XML bytes (no I/O, no HTTP).

Entries follow RFC 8322 (out-of-line content, ``rolie:format``, ``rolie:property``, information-type
category, ``collection`` link) and keep the draft-ietf-mile-rolie-02 restriction and purpose categories
(schemes from the expired draft-ietf-mile-rolie-csirt-03), which the access model keys on. Deleted
entries appear as RFC 6721 tombstones; archives carry RFC 5005's ``fh:archive``.

Feeds and entries are written as text, not built with lxml: a page of 50 entries is about 1,300
elements, and creating them one by one cost more than everything else a feed request does (issue 7).
The text is what lxml would serialise, byte for byte; the discovery documents, small and rare, are
built with lxml.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote

from lxml import etree

from xmppbridge import __version__
from xmppbridge.feed.layout import COLLECTIONS, PUBLIC_WORKSPACE, WORKSPACES, CollectionInfo, FeedUrls
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS, canonical_purpose
from xmppbridge.iodef.model import NS_V1, NS_V2, Incident
from xmppbridge.paths.custody import describe
from xmppbridge.store.entries import Entry
from xmppbridge.store.items import RELAY

ATOM_NS = "http://www.w3.org/2005/Atom"
APP_NS = "http://www.w3.org/2007/app"
ROLIE_NS = "urn:ietf:params:xml:ns:rolie-1.0"
FH_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005
AT_NS = "http://purl.org/atompub/tombstones/1.0"  # RFC 6721
OPENSEARCH_NS = "http://a9.com/-/spec/opensearch/1.1/"

FEED_MEDIA_TYPE = "application/atom+xml;type=feed"
ENTRY_MEDIA_TYPE = "application/atom+xml;type=entry"
SERVICE_MEDIA_TYPE = "application/atomsvc+xml"
CATEGORIES_MEDIA_TYPE = "application/atomcat+xml"
OPENSEARCH_MEDIA_TYPE = "application/opensearchdescription+xml"
HTML_MEDIA_TYPE = "text/html"
# No media type is registered for IODEF; RFC 7303's generic XML type is the honest choice.
IODEF_MEDIA_TYPE = "application/xml"
# What a collection accepts by POST (app:accept): an IODEF document, or an Atom entry carrying one inline.
ACCEPTED_MEDIA_TYPES = (IODEF_MEDIA_TYPE, "text/xml", ENTRY_MEDIA_TYPE)

INFORMATION_TYPE_SCHEME = "urn:ietf:params:rolie:category:information-type"
INFORMATION_TYPE = "incident"
RESTRICTION_SCHEME = "urn:ietf:params:rolie:category:csirt:iodef:restriction"
PURPOSE_SCHEME = "urn:ietf:params:rolie:category:csirt:iodef:purpose"

PROPERTY_CONTENT_ID = "urn:ietf:params:rolie:property:content-id"
PROPERTY_CONTENT_AUTHOR = "urn:ietf:params:rolie:property:content-author-name"
PROPERTY_CONTENT_PUBLISHED = "urn:ietf:params:rolie:property:content-published-date"
PROPERTY_REVISION = "urn:xmppbridge:property:revision"
PROPERTY_SIGNER = "urn:xmppbridge:property:signer"
PROPERTY_SIGNER_FINGERPRINT = "urn:xmppbridge:property:signer-fingerprint"
PROPERTY_SOURCE = "urn:xmppbridge:property:source"
# One per hop of a relayed document's custody chain, in order: the originator, then each relay.
PROPERTY_CUSTODY = "urn:xmppbridge:property:custody"

IODEF_NS_BY_VERSION = {"1.0": NS_V1, "2.0": NS_V2}
# For entry ids whose IncidentID name is no DNS name; derived, not random, so it never changes.
ENTRY_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:xmppbridge:entry-id")
TAG_FALLBACK_YEAR = 2000

_A = f"{{{ATOM_NS}}}"
_APP = f"{{{APP_NS}}}"
_ROLIE = f"{{{ROLIE_NS}}}"
_NSMAP_ATOM = {None: ATOM_NS, "rolie": ROLIE_NS}
_NSMAP_FEED = {**_NSMAP_ATOM, "fh": FH_NS, "at": AT_NS, "opensearch": OPENSEARCH_NS}
_NSMAP_SERVICE = {None: APP_NS, "atom": ATOM_NS, "rolie": ROLIE_NS}

# XML 1.0 Char production; everything else (C0 controls, lone surrogates, U+FFFE/F) cannot be serialised.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# What libxml2 escapes when it serialises text and attribute values (quotes: attributes use "...").
_TEXT_SPECIAL = re.compile("[&<>\r]")
_ATTR_SPECIAL = re.compile('[&<>"\r\n\t]')
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;", "\n": "&#10;",
             "\t": "&#9;"}


# -- small helpers -------------------------------------------------------------------------------------


def xml_text(value: str) -> str:
    """``value`` with characters XML 1.0 cannot carry replaced by U+FFFD (signer subjects are untrusted)."""
    if value.isprintable():  # the common case, decided in C: printable characters are all XML Chars
        return value
    return _NOT_XML_CHAR.sub("\ufffd", value)


def rfc3339(moment: datetime) -> str:
    """UTC, uppercase ``T`` and ``Z`` (RFC 4287 §3.3); fractional seconds only when present."""
    if moment.tzinfo is not UTC:  # the store's times are already UTC: no conversion for them
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # isoformat pads the year to four digits, unlike %Y; [:-6] drops its "+00:00"
    if not moment.microsecond:
        return moment.isoformat(timespec="seconds")[:-6] + "Z"
    return moment.isoformat(timespec="microseconds")[:-6].rstrip("0") + "Z"


def _text(value: str) -> str:
    """``value`` as element content, escaped as lxml would."""
    return _TEXT_SPECIAL.sub(_entity, xml_text(value))


def _attr(value: str) -> str:
    """``value`` as a double-quoted attribute value, escaped as lxml would."""
    return _ATTR_SPECIAL.sub(_entity, xml_text(value))


def _entity(match: re.Match[str]) -> str:
    return _ENTITIES[match[0]]


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


def _category(parent: etree._Element, scheme: str, term: str) -> etree._Element:
    return _sub(parent, _A + "category", scheme=scheme, term=term)


def _link(parent: etree._Element, rel: str, href: str, media_type: str) -> None:
    _sub(parent, _A + "link", rel=rel, href=href, type=media_type)


def _link_text(rel: str, href: str, media_type: str, title: str | None = None) -> str:
    more = "" if title is None else f' title="{_attr(title)}"'
    return f'<link rel="{_attr(rel)}" href="{_attr(href)}" type="{media_type}"{more}/>'


def _category_text(scheme: str, term: str) -> str:
    return f'<category scheme="{scheme}" term="{_attr(term)}"/>'


def _serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# -- identifiers and text ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)  # a feed names few CSIRTs, and IDNA encoding is slow
def dns_tagging_name(name: str) -> str | None:
    """``name`` as an RFC 4151 DNSname (lowercase, IDNA, no trailing dot), or None if it is not one."""
    name = name.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = ascii_name.split(".")
    if not ascii_name or len(ascii_name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        return None
    return ascii_name


def entry_atom_id(incident: Incident, published: datetime | None) -> str:
    """``tag:<name>,<year>:<id>[/<instance>]`` (RFC 4151), ids percent-encoded so that any IncidentID text
    gives a valid IRI. ``published`` must be the entry's fixed first-seen time so the id never changes.
    A name that is not a DNS name (IODEF does not enforce it) gives a ``urn:uuid`` derived from the same
    parts instead; the draft-02 concatenation ``name`` + ``id`` is not an IRI at all (RFC 4287 §4.2.6)."""
    year = published.astimezone(UTC).year if published else TAG_FALLBACK_YEAR
    authority = dns_tagging_name(incident.id_name)
    if authority is None:
        key = "\x00".join([incident.id_name, incident.id, incident.instance or ""])
        return uuid.uuid5(ENTRY_ID_NAMESPACE, key).urn
    specific = quote(incident.id, safe="")
    if incident.instance is not None:
        specific += "/" + quote(incident.instance, safe="")
    return f"tag:{authority},{year:04d}:{specific}"


def url_atom_id(url: str) -> str:
    """A stable feed id for a feed that lives at ``url`` (uuid5 of it): same deployment, same id."""
    return uuid.uuid5(uuid.NAMESPACE_URL, url).urn


def feed_atom_id(urls: FeedUrls, restriction: str) -> str:
    """One id per collection, shared by its pages and archives (RFC 5005: one logical feed)."""
    return url_atom_id(urls.feed(restriction))


def entry_title(incident: Incident) -> str:
    title = " ".join(incident.title.split())
    return title or f"Incident {incident.id} from {incident.id_name}"


def restriction_label(entry: Entry) -> str:
    """The collection's restriction, and how the Incident was marked when that says more."""
    incident = entry.incident
    if entry.restriction != incident.restriction:
        return f"{entry.restriction} (Incident marked {incident.restriction_raw}, parts of it narrower)"
    if incident.restriction_raw != entry.restriction:
        return f"{entry.restriction} (marked {incident.restriction_raw})"
    return entry.restriction


def entry_summary(entry: Entry) -> str:
    """One human-readable line; content itself is out of line, so RFC 4287 §4.1.2 requires a summary."""
    incident = entry.incident
    parts = [f"Restriction {restriction_label(entry)}", f"purpose {incident.purpose}"]
    for label, moment in (
        ("reported", incident.report_time),
        ("generated", incident.generation_time),
        ("detected", incident.detect_time),
        ("started", incident.start_time),
        ("ended", incident.end_time),
    ):
        if moment is not None:
            parts.append(f"{label} {rfc3339(moment)}")
    signer = entry.signer_subject or "unknown signer"
    if entry.signer_fingerprint:
        signer += f" (SHA-256 {entry.signer_fingerprint})"
    parts.append(f"signed by {signer}")
    relays = [hop for hop in entry.custody if hop.role == RELAY]
    if relays:
        parts.append("relayed by " + ", then ".join(hop.subject for hop in relays))
    return "; ".join(parts) + "."


def source_uri(entry: Entry) -> str:
    """XMPP URI of the pubsub item (RFC 5122 with the XEP-0060 §4.6.1 node/item query keys)."""
    return f"xmpp:{entry.service}?;node={quote(entry.node, safe='/')};item={quote(entry.item_id, safe='')}"


def related_links(entry: Entry, urls: FeedUrls) -> list[tuple[str, str]]:
    """RelatedActivity as links (draft-02 §5.13.1): (title, search URL for that IncidentID). A search,
    not an entry URL, so that the link neither reveals nor depends on what the reader may see."""
    return [(f"{name} {value}", urls.search([("incident", value)]))
            for name, value in entry.incident.related_ids]


def properties(entry: Entry) -> list[tuple[str, str]]:
    incident = entry.incident
    found = [(PROPERTY_CONTENT_ID, incident.id), (PROPERTY_CONTENT_AUTHOR, incident.id_name)]
    if incident.published_time is not None:
        found.append((PROPERTY_CONTENT_PUBLISHED, rfc3339(incident.published_time)))
    return found + [
        (PROPERTY_REVISION, str(entry.revision)),
        (PROPERTY_SIGNER, entry.signer_subject),
        (PROPERTY_SIGNER_FINGERPRINT, entry.signer_fingerprint),
        (PROPERTY_SOURCE, source_uri(entry)),
        *((PROPERTY_CUSTODY, describe(hop, rfc3339)) for hop in entry.custody),
    ]


# -- entries -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Deployment:
    """The parts of every entry that depend on the deployment only, escaped once."""

    entries: str  # prefix of an entry URL; the entry id follows
    service: str
    search: str
    collections: dict[str, str]  # restriction -> collection link


@lru_cache(maxsize=16)
def _deployment(urls: FeedUrls) -> _Deployment:
    entries = _attr(urls.entry(0)).removesuffix("0")
    collections = {r: _link_text("collection", urls.feed(r), FEED_MEDIA_TYPE) for r in RESTRICTIONS}
    return _Deployment(entries, _link_text("service", urls.service_document(), SERVICE_MEDIA_TYPE),
                       _link_text("search", urls.search_description(), OPENSEARCH_MEDIA_TYPE), collections)


def _entry_text(entry: Entry, urls: FeedUrls, declarations: str = "") -> str:
    """One ``atom:entry``; ``declarations`` are the namespace declarations of a standalone entry.

    The content links to this revision's document, so a feed or archive that shows an older revision
    keeps pointing at what it describes.
    """
    incident = entry.incident
    restriction = entry.restriction
    deployment = _deployment(urls)
    url = f"{deployment.entries}{entry.id}"
    parts = [
        f"<entry{declarations}><id>{_text(entry_atom_id(incident, entry.published_at))}</id>"
        f'<title type="text">{_text(entry_title(incident))}</title>'
    ]
    if entry.published_at is not None:
        parts.append(f"<published>{rfc3339(entry.published_at)}</published>")
    parts.append(
        f"<updated>{rfc3339(entry.updated_at)}</updated><author><name>{_text(incident.id_name)}</name></author>"
        f'<summary type="text">{_text(entry_summary(entry))}</summary>'
        f"{_category_text(INFORMATION_TYPE_SCHEME, INFORMATION_TYPE)}"
        f"{_category_text(RESTRICTION_SCHEME, restriction)}"
        f"{_category_text(PURPOSE_SCHEME, canonical_purpose(incident.purpose))}"
        f'<link rel="self" href="{url}" type="{ENTRY_MEDIA_TYPE}"/>'
        f'<link rel="alternate" href="{url}" type="{HTML_MEDIA_TYPE}"/>'
    )
    if entry.origin == "local":  # ours to change (RFC 5023 §9.1); mirrored entries belong to their publisher
        parts.append(f'<link rel="edit" href="{url}" type="{ENTRY_MEDIA_TYPE}"/>')
    # version-history: the registered relation for "every version of this resource" (RFC 5829 §3.1).
    parts.append(f'{deployment.collections[restriction]}{deployment.service}'
                 f'<link rel="version-history" href="{url}/history" type="{FEED_MEDIA_TYPE}"/>'
                 f"{deployment.search}")
    parts += [_link_text("related", href, FEED_MEDIA_TYPE, title)
              for title, href in related_links(entry, urls)]
    parts.append(f'<content type="{IODEF_MEDIA_TYPE}" src="{url}/revisions/{entry.revision}/iodef.xml"/>'
                 f'<rolie:format ns="{_attr(IODEF_NS_BY_VERSION.get(entry.version, NS_V2))}"'
                 f' version="{_attr(entry.version)}"/>')
    parts += [f'<rolie:property name="{name}" value="{_attr(value)}"/>' for name, value in properties(entry)]
    parts.append("</entry>")
    return "".join(parts)


def _tombstone_text(entry: Entry) -> str:
    """RFC 6721 ``at:deleted-entry`` for an entry no longer in this collection (retracted or moved)."""
    return (f'<at:deleted-entry ref="{_attr(entry_atom_id(entry.incident, entry.published_at))}"'
            f' when="{rfc3339(entry.updated_at)}"><at:comment>Removed from this collection.</at:comment>'
            "</at:deleted-entry>")


def _declarations(nsmap: dict[str | None, str]) -> str:
    return "".join(f' xmlns{"" if prefix is None else ":" + prefix}="{uri}"' for prefix, uri in nsmap.items())


_XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"
_ENTRY_DECLARATIONS = _declarations(_NSMAP_ATOM)
_FEED_DECLARATIONS = _declarations(_NSMAP_FEED)


def entry_document(entry: Entry, urls: FeedUrls) -> bytes:
    return (_XML_DECLARATION + _entry_text(entry, urls, _ENTRY_DECLARATIONS)).encode()


# -- feeds ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchInfo:
    """OpenSearch 1.1 response elements of a search results feed."""

    total: int | None  # None when too many to count
    start_index: int  # 1-based index of the first result on this page
    per_page: int


@dataclass(frozen=True)
class Link:
    """A link to another document of ours; ``type`` is the media type served at ``href``, so that a
    reader (and a feed validator) can tell a feed from an entry before fetching it."""

    rel: str
    href: str
    type: str = FEED_MEDIA_TYPE
    title: str | None = None


@dataclass(frozen=True)
class FeedView:
    """What a feed document shows; ``entries`` with ``deleted`` set become tombstones."""

    atom_id: str
    title: str
    self_url: str
    updated: datetime
    entries: Sequence[Entry]
    links: Sequence[Link] = ()  # further documents: paging, archives, the entry a history is of
    restriction: str | None = None  # the collection, for its category
    archive: bool = False  # an RFC 5005 archive document (fh:archive)
    complete: bool = False  # every entry there is, in one document (RFC 5005 fh:complete)
    search: SearchInfo | None = None


def feed_document(view: FeedView, urls: FeedUrls, *, author: str) -> bytes:
    parts = [
        f"{_XML_DECLARATION}<feed{_FEED_DECLARATIONS}><id>{_text(view.atom_id)}</id>"
        f'<title type="text">{_text(view.title)}</title><updated>{rfc3339(view.updated)}</updated>'
        f'<author><name>{_text(author)}</name></author><generator version="{_attr(__version__)}">xmppbridge'
        f"</generator>{_category_text(INFORMATION_TYPE_SCHEME, INFORMATION_TYPE)}"  # RFC 8322 §6.1
    ]
    if view.restriction is not None:
        parts.append(_category_text(RESTRICTION_SCHEME, view.restriction))
    if view.archive:
        parts.append("<fh:archive/>")
    if view.complete:
        parts.append("<fh:complete/>")
    if view.search is not None:
        if view.search.total is not None:
            parts.append(f"<opensearch:totalResults>{view.search.total}</opensearch:totalResults>")
        parts.append(f"<opensearch:startIndex>{view.search.start_index}</opensearch:startIndex>"
                     f"<opensearch:itemsPerPage>{view.search.per_page}</opensearch:itemsPerPage>")
    deployment = _deployment(urls)
    parts += [
        _link_text("self", view.self_url, FEED_MEDIA_TYPE),
        _link_text("alternate", view.self_url, HTML_MEDIA_TYPE),
        deployment.service,  # RFC 8322 §6.1.2: MUST
        deployment.search,
        *(_link_text(link.rel, link.href, link.type, link.title) for link in view.links),
        *(_tombstone_text(entry) if entry.deleted else _entry_text(entry, urls) for entry in view.entries),
        "</feed>",
    ]
    return "".join(parts).encode()


# -- discovery -----------------------------------------------------------------------------------------


def _categories(parent: etree._Element, restrictions: Collection[str]) -> None:
    _category(parent, INFORMATION_TYPE_SCHEME, INFORMATION_TYPE)  # exactly one (RFC 8322 §5.1.2)
    for restriction in restrictions:
        _category(parent, RESTRICTION_SCHEME, restriction)
    for purpose in PURPOSES:
        _category(parent, PURPOSE_SCHEME, purpose)


def _collection(workspace: etree._Element, info: CollectionInfo, urls: FeedUrls, writable: bool) -> None:
    collection = _sub(workspace, _APP + "collection", href=urls.feed(info.restriction))
    _sub(collection, _A + "title", info.title, type="text")
    if writable:
        for media_type in ACCEPTED_MEDIA_TYPES:
            _sub(collection, _APP + "accept", media_type)
    else:
        # An empty app:accept means nothing may be POSTed here: read-only (RFC 5023 §8.3.4).
        _sub(collection, _APP + "accept")
    _categories(_sub(collection, _APP + "categories", fixed="yes"), [info.restriction])
    for version, namespace in IODEF_NS_BY_VERSION.items():
        _sub(collection, _ROLIE + "format", ns=namespace, version=version)
    _link(collection, "search", urls.search_description(), OPENSEARCH_MEDIA_TYPE)


def service_document(urls: FeedUrls, readable: Collection[str], writable: Collection[str] = ()) -> bytes:
    """AtomPub service document listing only the collections whose restriction is in ``readable``.

    Workspaces without a readable collection are left out (rolie-csirt-03 §8); RFC 5023 needs at least
    one workspace, so a reader who may read nothing gets an empty Public workspace. Collections in
    ``writable`` list the media types they accept by POST.
    """
    root = etree.Element(_APP + "service", nsmap=_NSMAP_SERVICE)
    listed = [c for c in COLLECTIONS if c.restriction in readable]
    for name in WORKSPACES:
        visible = [c for c in listed if c.workspace == name]
        if not visible and (listed or name != PUBLIC_WORKSPACE):
            continue
        workspace = _sub(root, _APP + "workspace")
        _sub(workspace, _A + "title", name, type="text")
        for info in visible:
            _collection(workspace, info, urls, info.restriction in writable)
    return _serialise(root)


def category_document(readable: Collection[str]) -> bytes:
    """The RFC 5023 §7 category document: every category a reader may meet here."""
    root = etree.Element(_APP + "categories", nsmap={None: APP_NS, "atom": ATOM_NS}, fixed="yes")
    _categories(root, [r for r in RESTRICTIONS if r in readable])
    return _serialise(root)
