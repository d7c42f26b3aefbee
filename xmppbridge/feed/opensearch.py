"""OpenSearch 1.1: the description document (reached by ``rel="search"``) and the search request.

draft-ietf-mile-rolie-02 §5.16 asks for template parameters qualified by the IODEF namespace; each
parameter below is named after the IODEF element (or Atom construct) it searches::

    q               {searchTerms}          words in any Description (all of them, case and accents folded)
    category        {atom:category}        "<scheme> <term>" or just "<term>" (restriction, purpose or
                                           information-type scheme); repeat to require several
    incident        {iodef:IncidentID}     IncidentID text, exactly
    alternative     {iodef:AlternativeID}  an IncidentID inside AlternativeID, exactly
    related         {iodef:RelatedActivity} an IncidentID inside RelatedActivity, exactly
    indicator       {iodef:Observable}     an indicator (``iodef.indicators``): an address or network
                                           finds every entry whose addresses or networks overlap it
                                           (inside it, or containing it); anything else exactly
    reporttime, detecttime, starttime, endtime, generationtime
                    {iodef:ReportTime} ... an ISO 8601 interval "start/end" (either side may be empty) of
                                           dates or date-times, both ends inclusive; a single value means
                                           that instant, a single date that whole day (UTC)
    count, startPage                       OpenSearch paging

Pure: turns query parameters into a ``store.search.SearchQuery`` and renders the description.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree

from xmppbridge.feed import atom
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.classify import parse_datetime
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS
from xmppbridge.iodef.model import NS_V2
from xmppbridge.store.indicatorindex import IndicatorQuery
from xmppbridge.store.search import SearchQuery, TimeRange

# URL parameter -> OpenSearch template parameter
TEXT_PARAMETERS = {
    "q": "searchTerms",
    "category": "atom:category",
    "incident": "iodef:IncidentID",
    "alternative": "iodef:AlternativeID",
    "related": "iodef:RelatedActivity",
    "indicator": "iodef:Observable",
}
TIME_PARAMETERS = {  # URL parameter -> (template parameter, store column)
    "reporttime": ("iodef:ReportTime", "report_time"),
    "detecttime": ("iodef:DetectTime", "detect_time"),
    "starttime": ("iodef:StartTime", "start_time"),
    "endtime": ("iodef:EndTime", "end_time"),
    "generationtime": ("iodef:GenerationTime", "generation_time"),
}
PAGING_PARAMETERS = {"count": "count", "startPage": "startPage"}
QUERY_NAMES = (*TEXT_PARAMETERS, *TIME_PARAMETERS)  # what selects entries (paging aside)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class SearchRequest:
    query: SearchQuery
    criteria: tuple[tuple[str, str], ...]  # the selecting parameters as given, for links to other pages
    count: int
    start_page: int

    @property
    def offset(self) -> int:
        return (self.start_page - 1) * self.count


def template(urls: FeedUrls) -> str:
    names = {**TEXT_PARAMETERS, **{k: v[0] for k, v in TIME_PARAMETERS.items()}, **PAGING_PARAMETERS}
    return urls.search() + "?" + "&".join(f"{name}={{{param}?}}" for name, param in names.items())


def description_document(urls: FeedUrls) -> bytes:
    nsmap = {None: atom.OPENSEARCH_NS, "atom": atom.ATOM_NS, "iodef": NS_V2}
    root = etree.Element(f"{{{atom.OPENSEARCH_NS}}}OpenSearchDescription", nsmap=nsmap)

    def sub(tag: str, text: str | None = None, **attrs: str) -> etree._Element:
        element = etree.SubElement(root, f"{{{atom.OPENSEARCH_NS}}}{tag}", attrs)
        element.text = text
        return element

    sub("ShortName", "Incidents")  # at most 16 characters
    sub("Description", "Search the IODEF incidents of this ROLIE feed by category, IncidentID, "
                       "AlternativeID, RelatedActivity, indicator (address, network, name, URL, e-mail, "
                       "hash), IODEF times and Description text (IODEF 1.0 and 2.0 alike; the iodef prefix "
                       "names the elements searched).")
    sub("Tags", "IODEF ROLIE incident CSIRT")
    for media_type in (atom.FEED_MEDIA_TYPE, atom.HTML_MEDIA_TYPE):
        sub("Url", type=media_type, rel="results", template=template(urls))
    sub("Query", role="example", searchTerms="phishing")
    sub("SyndicationRight", "private")  # results depend on who asks
    sub("InputEncoding", "UTF-8")
    sub("OutputEncoding", "UTF-8")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def parse_request(params: Sequence[tuple[str, str]], *, default_count: int, max_count: int) -> SearchRequest:
    """Query parameters (in order, repeats kept) -> what to search. ValueError says what is wrong."""
    text: list[str] = []
    single: dict[str, str] = {}
    restrictions: set[str] | None = None
    purposes: set[str] | None = None
    times: list[TimeRange] = []
    criteria: list[tuple[str, str]] = []
    for name, value in params:
        if name not in QUERY_NAMES:
            continue  # paging, format, and unknown parameters select nothing
        value = value.strip()
        if not value:
            continue  # an empty form field or an unfilled optional template parameter
        criteria.append((name, value))
        if name == "q":
            text.append(value)
        elif name == "category":
            kind, term = _category(value)
            if kind == "restriction":
                restrictions = {term} if restrictions is None else restrictions & {term}
            elif kind == "purpose":
                purposes = {term} if purposes is None else purposes & {term}
        elif name in TIME_PARAMETERS:
            start, end = parse_interval(value, name)
            times.append(TimeRange(TIME_PARAMETERS[name][1], start, end))
        elif name in single and single[name] != value:
            raise ValueError(f"{name} given twice with different values")
        else:
            single[name] = value
    query = SearchQuery(
        restrictions=None if restrictions is None else frozenset(restrictions),
        purposes=None if purposes is None else frozenset(purposes),
        incident_id=single.get("incident"),
        alternative_id=single.get("alternative"),
        related_id=single.get("related"),
        times=tuple(times),
        text=" ".join(text) or None,
        indicator=IndicatorQuery(single["indicator"]) if "indicator" in single else None,
    )
    values = dict(params)
    count = _positive(values.get("count"), "count", default_count)
    if count > max_count:
        raise ValueError(f"count may be at most {max_count}")
    return SearchRequest(query, tuple(criteria), count, _positive(values.get("startPage"), "startPage", 1))


def _positive(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a positive whole number, not {raw!r}")
    return int(raw)


_SCHEMES = {
    atom.RESTRICTION_SCHEME: "restriction",
    atom.PURPOSE_SCHEME: "purpose",
    atom.INFORMATION_TYPE_SCHEME: "information-type",
}


def _category(value: str) -> tuple[str, str]:
    """("restriction" | "purpose", term), or ("information-type", "incident") which selects everything.

    Terms outside the schemes' vocabularies are refused rather than silently matching nothing."""
    scheme, _, term = value.rpartition(" ")
    if scheme:
        kinds = [_SCHEMES.get(scheme.strip())]
        if kinds == [None]:
            raise ValueError(f"category: unknown scheme {scheme.strip()!r}; use one of {', '.join(_SCHEMES)}")
    else:
        kinds = list(_SCHEMES.values())
    for kind in kinds:
        if (kind == "restriction" and term in RESTRICTIONS) or (kind == "purpose" and term in PURPOSES):
            return kind, term  # type: ignore[return-value]
        if kind == "information-type" and term == atom.INFORMATION_TYPE:
            return kind, term  # type: ignore[return-value]
    raise ValueError(f"category: {term!r} is no term of {' or '.join(k for k in kinds if k)}")


def parse_interval(value: str, name: str) -> tuple[datetime | None, datetime | None]:
    start_text, slash, end_text = value.partition("/")
    if not slash:
        start = _bound(start_text, name, end=False)
        return start, _bound(start_text, name, end=True)
    start = _bound(start_text, name, end=False) if start_text.strip() else None
    end = _bound(end_text, name, end=True) if end_text.strip() else None
    if start is None and end is None:
        raise ValueError(f"{name}: give a start, an end or both, as start/end")
    if start is not None and end is not None and start > end:
        raise ValueError(f"{name}: the interval ends before it starts")
    return start, end


def _bound(text: str, name: str, *, end: bool) -> datetime:
    text = text.strip()
    if _DATE.fullmatch(text):
        try:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a date") from None
        return day + timedelta(days=1, microseconds=-1) if end else day
    moment = parse_datetime(text)
    if moment is None:
        raise ValueError(f"{name}: {text!r} is neither a date (2024-05-01) nor a date-time"
                         " (2024-05-01T12:00:00Z)")
    return moment
