"""HTML views of the service document, feeds, entries and incidents, for people with a browser.

Pure functions to bytes, built as lxml trees: every string goes in as text or an attribute value and
is escaped on serialisation, so nothing from an IODEF document (untrusted) can become markup. Links
only ever point at our own URLs; URLs inside incidents are shown as text, never as links. The shell adds
a Content-Security-Policy that forbids scripts altogether.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import lxml.html
from lxml import etree

from xmppbridge.errors import InputRejected
from xmppbridge.feed import atom
from xmppbridge.feed.layout import COLLECTIONS, WORKSPACES, FeedUrls
from xmppbridge.feed.opensearch import TIME_PARAMETERS
from xmppbridge.iodef.indicators import of_document
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS, canonical_purpose
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.paths.custody import describe
from xmppbridge.store.entries import Entry

NS_DSIG = "http://www.w3.org/2000/09/xmldsig#"
MAX_RENDERED_ELEMENTS = 5000  # a readable page, not a dump: beyond this the raw document is the way
_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:baseline}
header a{color:#fff}main{padding:1em 1.2em;max-width:72em}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border:1px solid #d5d9e0;padding:.3em .5em;
text-align:left;vertical-align:top}th{background:#e9edf3}nav.paging a{margin-right:1em}
dl.iodef{margin:.2em 0 .2em 1em;border-left:3px solid #d5d9e0;padding-left:.6em}dl.iodef dt{font-weight:600}
dl.iodef dd{margin:0 0 .3em 0;white-space:pre-wrap}.attrs{font-weight:400;color:#5a6270;font-size:.9em}
.deleted{color:#8a1c1c}form.search{background:#fff;padding:.6em;border:1px solid #d5d9e0;margin:1em 0}
form.search label{display:inline-block;margin:.2em 1em .2em 0}
"""
_LINK_LABELS = {
    "first": "« first", "previous": "‹ newer", "next": "older ›", "last": "last »",
    "current": "current feed", "prev-archive": "older archive", "next-archive": "newer archive",
}


@dataclass(frozen=True)
class Viewer:
    """Who is looking, for the header: a user name or None for an anonymous reader."""

    name: str | None


def _text(value: str) -> str:
    return atom.xml_text(value)


Child = etree._Element | str | None


def el(tag: str, attrs: dict[str, str] | None = None, *children: Child) -> etree._Element:
    """An element with escaped text children; ``None`` children are left out. The dashboard uses it too."""
    element = etree.Element(tag, {k: _text(v) for k, v in (attrs or {}).items()})
    for child in children:
        _append(element, child)
    return element


def _append(parent: etree._Element, child: Child) -> None:
    if child is None:
        return
    if isinstance(child, str):
        if len(parent):
            parent[-1].tail = (parent[-1].tail or "") + _text(child)
        else:
            parent.text = (parent.text or "") + _text(child)
    else:
        parent.append(child)


def _a(href: str, label: str, **attrs: str) -> etree._Element:
    return el("a", {"href": href, **attrs}, label)


def page(title: str, urls: FeedUrls, viewer: Viewer, *content: Child) -> bytes:
    """A whole HTML page with the feed's header and style around ``content``."""
    search = {"rel": "search", "type": atom.OPENSEARCH_MEDIA_TYPE, "href": urls.search_description(),
              "title": "Incidents"}
    head = el("head", None, el("meta", {"charset": "utf-8"}), el("title", None, title),
              el("link", search), el("style", None, _STYLE))
    who = (f"signed in as {viewer.name}" if viewer.name else None)
    header = el("header", None, el("strong", None, "xmppbridge"),
                _a(urls.service_document(), "Collections"), _a(urls.search(), "Search"),
                el("span", None, who) if who else _a(urls.login(), "Sign in"))
    body = el("body", None, header, el("main", None, el("h1", None, title), *content))
    html = el("html", {"lang": "en"}, head, body)
    return lxml.html.tostring(html, doctype="<!DOCTYPE html>", encoding="utf-8")


# -- discovery -----------------------------------------------------------------------------------------


def service_page(urls: FeedUrls, viewer: Viewer, readable: Collection[str],
                 writable: Collection[str]) -> bytes:
    sections: list[etree._Element] = []
    for workspace in WORKSPACES:
        listed = [c for c in COLLECTIONS if c.workspace == workspace and c.restriction in readable]
        if not listed:
            continue
        items = el("ul")
        for info in listed:
            note = " (you may publish here)" if info.restriction in writable else ""
            items.append(el("li", None, _a(urls.feed(info.restriction), info.title), note))
        sections += [el("h2", None, workspace), items]
    if not sections:
        sections.append(el("p", None, "Nothing here is readable without signing in."))
    return page("Incident collections", urls, viewer, *sections, search_form(urls, (), readable))


def search_form(urls: FeedUrls, given: Sequence[tuple[str, str]],
                readable: Collection[str]) -> etree._Element:
    """A GET form for /search; ``given`` pre-fills it (the criteria of the shown results)."""
    values = dict(given)
    form = el("form", {"class": "search", "method": "get", "action": urls.search()})

    def field(label: str, name: str, placeholder: str = "") -> None:
        attrs = {"name": name, "value": values.get(name, ""), "placeholder": placeholder}
        form.append(el("label", None, label + " ", el("input", attrs)))

    field("Text in Description", "q", "words")
    field("IncidentID", "incident")
    field("AlternativeID", "alternative")
    field("RelatedActivity", "related")
    field("Indicator", "indicator", "address, network, name, hash")
    select = el("select", {"name": "category"}, el("option", {"value": ""}, "any category"))
    options = [(f"{atom.RESTRICTION_SCHEME} {r}", f"restriction {r}") for r in RESTRICTIONS if r in readable]
    options += [(f"{atom.PURPOSE_SCHEME} {p}", f"purpose {p}") for p in PURPOSES]
    for value, label in options:
        attrs = {"value": value, **({"selected": "selected"} if values.get("category") == value else {})}
        select.append(el("option", attrs, label))
    form.append(el("label", None, "Category ", select))
    for name, (param, _) in TIME_PARAMETERS.items():
        field(param.removeprefix("iodef:"), name, "start/end")
    form.append(el("button", {"type": "submit"}, "Search"))
    return form


# -- feeds ---------------------------------------------------------------------------------------------


def _entry_row(entry: Entry, urls: FeedUrls) -> etree._Element:
    incident = entry.incident
    if entry.deleted:
        return el("tr", {"class": "deleted"}, el("td", None, f"{atom.entry_title(incident)} (removed)"),
                  el("td", None, incident.id), el("td"), el("td"),
                  el("td", None, atom.rfc3339(entry.updated_at)))
    return el("tr", None,
              el("td", None, _a(urls.entry(entry.id), atom.entry_title(incident))),
              el("td", None, incident.id),
              el("td", None, entry.restriction),
              el("td", None, canonical_purpose(incident.purpose)),
              el("td", None, atom.rfc3339(entry.updated_at)))


def _link_nav(links: Iterable[atom.Link]) -> etree._Element | None:
    """Paging and archive links under their labels; any other link under its own title."""
    shown = [link for link in links if link.rel in _LINK_LABELS or link.title]
    if not shown:
        return None
    nav = el("nav", {"class": "paging"})
    for link in shown:
        nav.append(_a(link.href, link.title or _LINK_LABELS[link.rel], rel=link.rel))
    return nav


def feed_page(view: atom.FeedView, urls: FeedUrls, viewer: Viewer, *,
              form: etree._Element | None = None) -> bytes:
    table = el("table", None, el("tr", None, *(el("th", None, h) for h in (
        "Incident", "IncidentID", "Restriction", "Purpose", "Updated"))))
    for entry in view.entries:
        table.append(_entry_row(entry, urls))
    notes = []
    if view.archive:
        notes.append(el("p", None, "An archive: this page never changes."))
    if view.search is not None:
        total = "many" if view.search.total is None else str(view.search.total)
        notes.append(el("p", None, f"{total} result(s); showing from number {view.search.start_index}."))
    nav = _link_nav(view.links)
    return page(view.title, urls, viewer, form, *notes, nav,
                table if view.entries else el("p", None, "No entries."), _link_nav(view.links))


# -- entries -------------------------------------------------------------------------------------------


def entry_page(entry: Entry, urls: FeedUrls, viewer: Viewer, *, writable: bool = False) -> bytes:
    incident = entry.incident
    facts = [
        ("IncidentID", f"{incident.id} ({incident.id_name})"),
        ("Restriction", atom.restriction_label(entry)),
        ("Purpose", incident.purpose),
        *((label, atom.rfc3339(moment)) for label, moment in (
            ("Report time", incident.report_time), ("Generation time", incident.generation_time),
            ("Detect time", incident.detect_time), ("Start time", incident.start_time),
            ("End time", incident.end_time)) if moment is not None),
        ("AlternativeID", ", ".join(f"{v} ({n})" for n, v in incident.alternative_ids)),
        ("Signed by", f"{entry.signer_subject or 'unknown'} {entry.signer_fingerprint}".strip()),
        ("Source", atom.source_uri(entry)),
        ("Version", f"IODEF {entry.version}, revision {entry.revision},"
                    f" updated {atom.rfc3339(entry.updated_at)}"),
    ]
    table = el("table")
    for label, value in facts:
        if value:
            table.append(el("tr", None, el("th", None, label), el("td", None, value)))
    if entry.custody:  # relayed: who held it, originator first (the signer above is the originator)
        chain = el("ol", None, *(el("li", None, describe(hop, atom.rfc3339)) for hop in entry.custody))
        table.append(el("tr", None, el("th", None, "Custody"), el("td", None, chain)))
    links = el("ul", None,
               el("li", None, _a(urls.revision(entry.id, entry.revision), "The signed IODEF document")),
               el("li", None, _a(urls.history(entry.id), "Every version (history)")),
               el("li", None, _a(urls.indicators_csv(entry.id), "The indicators as CSV")),
               el("li", None, _a(urls.stix(entry.id), "The incident as a STIX 2.1 bundle")),
               el("li", None, _a(urls.feed(entry.restriction), f"Collection {entry.restriction}")))
    for title, href in atom.related_links(entry, urls):
        links.append(el("li", None, "Related: ", _a(href, title)))
    if writable:
        links.append(el("li", None, "You may replace (PUT) or retract (DELETE) this entry over AtomPub."))
    return page(atom.entry_title(incident), urls, viewer, table, links,
                el("h2", None, "Indicators"), indicator_table(entry.xml, urls),
                el("h2", None, "The incident"), incident_view(entry.xml))


def indicator_table(xml: bytes, urls: FeedUrls) -> etree._Element:
    """The document's indicators (iodef/indicators.py) as a table: what an analyst would otherwise find
    by eye in the tree below. Each value links to a search for every incident that names it."""
    try:
        found = of_document(xml)
    except InputRejected as exc:
        return el("p", None, f"The document cannot be read: {exc}")
    if not found:
        return el("p", None, "None: the document names no address, domain, URL, e-mail, hash or port.")
    table = el("table", {"class": "indicators"}, el("tr", None, *(el("th", None, label) for label in (
        "Kind", "Value", "Role", "Expectation"))))
    for i in found:
        kind = f"{i.kind} ({i.algorithm})" if i.algorithm else i.kind
        value = _a(urls.search([("indicator", i.value)]), i.value)
        table.append(el("tr", None, el("td", None, kind), el("td", None, value),
                        el("td", None, i.role), el("td", None, i.expectation)))
    return table


def incident_view(xml: bytes) -> etree._Element:
    """A readable rendering of an IODEF document: every element with its attributes and text."""
    try:
        root = parse_untrusted(xml, max_bytes=max(len(xml), 1))
    except InputRejected as exc:
        return el("p", None, f"The document cannot be shown: {exc}")
    budget = [MAX_RENDERED_ELEMENTS]
    container = el("dl", {"class": "iodef"})
    _render(root, container, budget)
    if budget[0] <= 0:
        cut = el("p", None, "(cut short: open the IODEF document for the rest)")
        return el("div", None, container, cut)
    return container


def _render(element: etree._Element, parent: etree._Element, budget: list[int]) -> None:
    if not isinstance(element.tag, str) or budget[0] <= 0:
        return
    budget[0] -= 1
    name = etree.QName(element).localname
    if etree.QName(element).namespace == NS_DSIG:
        parent.append(el("dt", None, "Signature"))
        parent.append(el("dd", None, "XML signature, checked when the document was received or published."))
        return
    attrs = " ".join(f"{etree.QName(k).localname}={v}" for k, v in element.attrib.items())
    parent.append(el("dt", None, name, " ", el("span", {"class": "attrs"}, attrs) if attrs else None))
    holder = el("dd")
    text = " ".join((element.text or "").split())
    if text:
        holder.text = _text(text)
    children = [child for child in element if isinstance(child.tag, str)]
    if children:
        nested = el("dl", {"class": "iodef"})
        for child in children:
            _render(child, nested, budget)
        holder.append(nested)
    parent.append(holder)
