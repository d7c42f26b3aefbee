"""Indicators as CSV, a blocklist a SOC can load: one row per indicator of each entry given, with the
entry's restriction on every row so that a row never travels without its handling rule.

The rows come from the stored, verified document (``iodef.indicators``); which entries are given is the
caller's decision, made with the reader's rights as for every other view of the feed.

Spreadsheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (CSV injection), and
a peer wrote these values. Such a value is given with a leading ``'``, as OWASP's CSV injection advice
says; no address, network, port or hash starts that way, so those stay exact for tools.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.store.entries import Entry

MEDIA_TYPE = "text/csv; charset=utf-8; header=present"  # RFC 7111 §5.1 (header: RFC 4180 §3)
COLUMNS = ("restriction", "purpose", "incident_name", "incident_id", "kind", "value", "role", "expectation",
           "algorithm", "entry")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def indicators_csv(entries: Iterable[Entry], urls: FeedUrls) -> bytes:
    """RFC 4180 CSV (CRLF line ends, a header row) of every indicator of ``entries``, in their order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for entry in entries:
        incident = entry.incident
        for i in entry.indicator_list():
            writer.writerow(_safe(cell) for cell in (
                entry.restriction, canonical_purpose(incident.purpose), incident.id_name, incident.id,
                i.kind, i.value, i.role, i.expectation, i.algorithm, urls.entry(entry.id)))
    return out.getvalue().encode()


def _safe(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell
