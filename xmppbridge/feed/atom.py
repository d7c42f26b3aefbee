"""Atom / AtomPub / ROLIE rendering: pure functions from store entries to XML bytes (no I/O, no HTTP).

Entries follow RFC 8322 (out-of-line content, ``rolie:format``, ``rolie:property``, information-type
category, ``collection`` link) and keep the draft-ietf-mile-rolie-02 restriction and purpose categories
(schemes from the expired draft-ietf-mile-rolie-csirt-03), which the access model keys on.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from lxml import etree

from xmppbridge import __version__
from xmppbridge.feed.layout import COLLECTIONS, PUBLIC_WORKSPACE, WORKSPACES, CollectionInfo, FeedUrls
from xmppbridge.iodef.model import NS_V1, NS_V2, Incident
from xmppbridge.policy import PURPOSES, canonical_purpose
from xmppbridge.store.entries import Entry

ATOM_NS = "http://www.w3.org/2005/Atom"
APP_NS = "http://www.w3.org/2007/app"
ROLIE_NS = "urn:ietf:params:xml:ns:rolie-1.0"

FEED_MEDIA_TYPE = "application/atom+xml;type=feed"
ENTRY_MEDIA_TYPE = "application/atom+xml;type=entry"
SERVICE_MEDIA_TYPE = "application/atomsvc+xml"
# No media type is registered for IODEF; RFC 7303's generic XML type is the honest choice.
IODEF_MEDIA_TYPE = "application/xml"

INFORMATION_TYPE_SCHEME = "urn:ietf:params:rolie:category:information-type"
INFORMATION_TYPE = "incident"
RESTRICTION_SCHEME = "urn:ietf:params:rolie:category:csirt:iodef:restriction"
PURPOSE_SCHEME = "urn:ietf:params:rolie:category:csirt:iodef:purpose"

PROPERTY_CONTENT_ID = "urn:ietf:params:rolie:property:content-id"
PROPERTY_CONTENT_AUTHOR = "urn:ietf:params:rolie:property:content-author-name"
PROPERTY_CONTENT_PUBLISHED = "urn:ietf:params:rolie:property:content-published-date"
PROPERTY_SIGNER = "urn:xmppbridge:property:signer"
PROPERTY_SIGNER_FINGERPRINT = "urn:xmppbridge:property:signer-fingerprint"
PROPERTY_SOURCE = "urn:xmppbridge:property:source"

IODEF_NS_BY_VERSION = {"1.0": NS_V1, "2.0": NS_V2}
# For entry ids whose IncidentID name is no DNS name; derived, not random, so it never changes.
ENTRY_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:xmppbridge:entry-id")
TAG_FALLBACK_YEAR = 2000

_A = f"{{{ATOM_NS}}}"
_APP = f"{{{APP_NS}}}"
_ROLIE = f"{{{ROLIE_NS}}}"
_NSMAP_ATOM = {None: ATOM_NS, "rolie": ROLIE_NS}
_NSMAP_SERVICE = {None: APP_NS, "atom": ATOM_NS}

# XML 1.0 Char production; everything else (C0 controls, lone surrogates, U+FFFE/F) cannot be serialised.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


# -- small helpers -------------------------------------------------------------------------------------


def xml_text(value: str) -> str:
    """``value`` with characters XML 1.0 cannot carry replaced by U+FFFD (signer subjects are untrusted)."""
    return _NOT_XML_CHAR.sub("\ufffd", value)


def rfc3339(moment: datetime) -> str:
    """UTC, uppercase ``T`` and ``Z`` (RFC 4287 §3.3); fractional seconds only when present."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC).replace(tzinfo=None)
    text = moment.isoformat(timespec="seconds")  # four-digit year even below 1000, unlike %Y
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


def _category(parent: etree._Element, scheme: str, term: str) -> etree._Element:
    return _sub(parent, _A + "category", scheme=scheme, term=term)


def _serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# -- identifiers ---------------------------------------------------------------------------------------


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
    parts instead; the draft-02 concatenation ``name`` + ``id`` is not an IRI at all (DIGEST §5)."""
    year = published.astimezone(UTC).year if published else TAG_FALLBACK_YEAR
    authority = dns_tagging_name(incident.id_name)
    if authority is None:
        key = "\x00".join([incident.id_name, incident.id, incident.instance or ""])
        return uuid.uuid5(ENTRY_ID_NAMESPACE, key).urn
    specific = quote(incident.id, safe="")
    if incident.instance is not None:
        specific += "/" + quote(incident.instance, safe="")
    return f"tag:{authority},{year:04d}:{specific}"


def feed_atom_id(urls: FeedUrls, restriction: str) -> str:
    """Stable per deployment and collection: uuid5 of the collection's URL (base URL + restriction)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, urls.feed(restriction)).urn


def entry_title(incident: Incident) -> str:
    title = " ".join(incident.title.split())
    return title or f"Incident {incident.id} from {incident.id_name}"


def entry_summary(entry: Entry) -> str:
    """One human-readable line; content itself is out of line, so RFC 4287 §4.1.2 requires a summary."""
    incident = entry.incident
    restriction = entry.restriction
    if entry.restriction != incident.restriction:
        restriction += f" (Incident marked {incident.restriction_raw}, parts of it narrower)"
    elif incident.restriction_raw != restriction:
        restriction += f" (marked {incident.restriction_raw})"
    parts = [f"Restriction {restriction}", f"purpose {incident.purpose}"]
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
    return "; ".join(parts) + "."


def source_uri(entry: Entry) -> str:
    """XMPP URI of the pubsub item (RFC 5122 with the XEP-0060 §4.6.1 node/item query keys)."""
    return f"xmpp:{entry.service}?;node={quote(entry.node, safe='/')};item={quote(entry.item_id, safe='')}"


# -- entries -------------------------------------------------------------------------------------------


def entry_element(entry: Entry, urls: FeedUrls, parent: etree._Element | None = None) -> etree._Element:
    """One ``atom:entry``: appended to ``parent`` (a feed), or standalone with its own declarations."""
    incident = entry.incident
    if parent is None:
        root = etree.Element(_A + "entry", nsmap=_NSMAP_ATOM)
    else:
        root = etree.SubElement(parent, _A + "entry")
    _sub(root, _A + "id", entry_atom_id(incident, entry.published_at))
    _sub(root, _A + "title", entry_title(incident), type="text")
    if entry.published_at is not None:
        _sub(root, _A + "published", rfc3339(entry.published_at))
    _sub(root, _A + "updated", rfc3339(entry.updated_at))
    author = _sub(root, _A + "author")
    _sub(author, _A + "name", incident.id_name)
    _sub(root, _A + "summary", entry_summary(entry), type="text")

    _category(root, INFORMATION_TYPE_SCHEME, INFORMATION_TYPE)
    _category(root, RESTRICTION_SCHEME, entry.restriction)
    _category(root, PURPOSE_SCHEME, canonical_purpose(incident.purpose))

    _sub(root, _A + "link", rel="self", href=urls.entry(entry.id), type=ENTRY_MEDIA_TYPE)
    _sub(root, _A + "link", rel="collection", href=urls.feed(entry.restriction), type=FEED_MEDIA_TYPE)
    _sub(root, _A + "content", type=IODEF_MEDIA_TYPE, src=urls.iodef(entry.id))

    _sub(root, _ROLIE + "format", ns=IODEF_NS_BY_VERSION.get(entry.version, NS_V2), version=entry.version)
    properties = [
        (PROPERTY_CONTENT_ID, incident.id),
        (PROPERTY_CONTENT_AUTHOR, incident.id_name),
    ]
    if incident.published_time is not None:
        properties.append((PROPERTY_CONTENT_PUBLISHED, rfc3339(incident.published_time)))
    properties += [
        (PROPERTY_SIGNER, entry.signer_subject),
        (PROPERTY_SIGNER_FINGERPRINT, entry.signer_fingerprint),
        (PROPERTY_SOURCE, source_uri(entry)),
    ]
    for name, value in properties:
        _sub(root, _ROLIE + "property", name=name, value=value)
    return root


def entry_document(entry: Entry, urls: FeedUrls) -> bytes:
    return _serialise(entry_element(entry, urls))


# -- feeds ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """Page ``number`` (1-based) of ``last`` pages (``last`` is 1 for an empty feed)."""

    number: int
    last: int

    @classmethod
    def of(cls, number: int, total: int, size: int) -> Page:
        return cls(number, max(1, -(-total // size)))


def paging_links(page: Page) -> list[tuple[str, int]]:
    """RFC 5005 §3 rels -> page numbers. ``previous``, not the ``prev`` of RFC 8322's example."""
    links = [("first", 1)]
    if page.number > 1:
        links.append(("previous", page.number - 1))
    if page.number < page.last:
        links.append(("next", page.number + 1))
    links.append(("last", page.last))
    return links


def feed_document(
    urls: FeedUrls,
    restriction: str,
    entries: Sequence[Entry],
    *,
    page: Page,
    updated: datetime,
    author: str,
) -> bytes:
    """One page of a collection's feed, with RFC 5005 paging links. ``updated`` is the newest entry
    change in the whole collection (RFC 8322 §6.1.3), or the time of rendering when it is empty."""
    root = etree.Element(_A + "feed", nsmap=_NSMAP_ATOM)
    _sub(root, _A + "id", feed_atom_id(urls, restriction))
    _sub(root, _A + "title", f"Incidents ({restriction})", type="text")
    _sub(root, _A + "updated", rfc3339(updated))
    person = _sub(root, _A + "author")
    _sub(person, _A + "name", author)
    _sub(root, _A + "generator", "xmppbridge", version=__version__)
    _category(root, INFORMATION_TYPE_SCHEME, INFORMATION_TYPE)
    _category(root, RESTRICTION_SCHEME, restriction)

    _sub(root, _A + "link", rel="self", href=urls.feed(restriction, page.number), type=FEED_MEDIA_TYPE)
    _sub(root, _A + "link", rel="service", href=urls.service_document(), type=SERVICE_MEDIA_TYPE)
    for rel, number in paging_links(page):
        _sub(root, _A + "link", rel=rel, href=urls.feed(restriction, number), type=FEED_MEDIA_TYPE)

    for entry in entries:
        entry_element(entry, urls, parent=root)
    return _serialise(root)


# -- service document ----------------------------------------------------------------------------------


def _collection(workspace: etree._Element, info: CollectionInfo, urls: FeedUrls) -> None:
    collection = _sub(workspace, _APP + "collection", href=urls.feed(info.restriction))
    _sub(collection, _A + "title", info.title, type="text")
    # An empty app:accept means no media may be POSTed: the collection is read-only (RFC 5023 §8.3.4).
    _sub(collection, _APP + "accept")
    categories = _sub(collection, _APP + "categories", fixed="yes")
    _category(categories, INFORMATION_TYPE_SCHEME, INFORMATION_TYPE)
    _category(categories, RESTRICTION_SCHEME, info.restriction)
    for purpose in PURPOSES:
        _category(categories, PURPOSE_SCHEME, purpose)


def service_document(urls: FeedUrls, readable: Collection[str]) -> bytes:
    """AtomPub service document listing only the collections whose restriction is in ``readable``.

    Workspaces without a readable collection are left out (rolie-csirt-03 §8); RFC 5023 needs at least
    one workspace, so a reader who may read nothing gets an empty Public workspace.
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
            _collection(workspace, info, urls)
    return _serialise(root)
