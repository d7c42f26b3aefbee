"""The operators' dashboard: the consortium's traffic as charts drawn on the server, inline SVG in the
feed's HTML (no scripts, as every page of the feed; the Content-Security-Policy forbids them).

Drawn from the store (``store.counts.activity``, ``Store.peers``, the outbox):

- entries first stored per day, stacked by restriction, and per reporting CSIRT and restriction;
- refusals per reason (the quarantine);
- publish delay per day, median and 95th percentile, from queued to published in our outbox: the part
  of delivery this bridge controls (a peer's receipt time is not known here);
- arrival delay per reporting CSIRT and day, the receiving side's: from the time each mirrored item's
  signed document states to when we first stored it (``feed/arrivals.py`` says why that is the best a
  receiver can know), with the items that arrived before the time they state shown apart;
- each peer's health;
- the outbox's depth: its peak per day (from when each item was queued and published, since a healthy
  outbox is empty whenever one looks) and what waits now, per node.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from lxml import etree

from xmppbridge.feed import arrivals
from xmppbridge.feed.arrivals import p95
from xmppbridge.feed.html import Viewer, el, page
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.markings import RESTRICTIONS
from xmppbridge.peers import PeerHealth
from xmppbridge.store.counts import Activity

DAYS = 14
COLOURS = {"public": "#4a90d9", "partner": "#33a02c", "need-to-know": "#ff9f00", "private": "#d62728",
           "default": "#7f7f7f"}
MEDIAN, ARRIVAL_MEDIAN, P95, AHEAD = "#4a90d9", "#17becf", "#c7c7c7", "#9467bd"
_WIDTH, _BAR = 640, 18


def render(activity: Activity, peers: Sequence[PeerHealth], urls: FeedUrls, viewer: Viewer,
           today: datetime) -> bytes:
    depth = sum(n for _, n in activity.pending)
    days = [(today - timedelta(days=n)).date().isoformat() for n in range(DAYS - 1, -1, -1)]
    return page("Dashboard", urls, viewer,
                el("h2", None, f"Entries stored per day (last {DAYS} days)"), _per_day(activity, days),
                _per_member(activity),
                el("h2", None, "Refusals per reason"),
                _bars([(reason, n) for reason, n in activity.refusals], "refusals", "#d62728"),
                el("h2", None, "Publish delay per day (queued to published, median and 95th percentile)"),
                _delays(activity, days),
                el("h2", None, "Arrival delay per reporting CSIRT and day (from the time its signed document"
                               " states to our receipt; clocks may differ)"),
                *_arrivals(activity, days),
                el("h2", None, "Peers"), _peers(peers),
                el("h2", None, "Outbox depth per day (the most items waiting at once)"),
                _peaks(peak_depths(activity.outbox, days), days),
                el("h2", None, f"Outbox now: {depth} waiting"),
                _bars(activity.pending, "waiting", "#ff9f00"))


def _svg(height: int, label: str) -> etree._Element:
    return el("svg", {"width": str(_WIDTH), "height": str(height), "viewBox": f"0 0 {_WIDTH} {height}",
                      "role": "img", "aria-label": label, "class": "chart"})


def _rect(x: float, y: float, w: float, h: float, colour: str, title: str) -> etree._Element:
    return el("rect", {"x": f"{x:.1f}", "y": f"{y:.1f}", "width": f"{max(w, 0):.1f}",
                       "height": f"{max(h, 0):.1f}", "fill": colour}, el("title", None, title))


def _text(x: float, y: float, text: str, **attrs: str) -> etree._Element:
    return el("text", {"x": f"{x:.1f}", "y": f"{y:.1f}", "font-size": "11", **attrs}, text)


def _per_day(activity: Activity, days: list[str]) -> etree._Element:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day, _, restriction, n in activity.stored:
        counts[day][restriction] += n
    top = max((sum(c.values()) for c in counts.values()), default=0) or 1
    height, base, column = 200, 170, (_WIDTH - 40) / len(days)
    svg = _svg(height, "entries stored per day, by restriction")
    for i, day in enumerate(days):
        x, y = 30 + i * column, float(base)
        for restriction in RESTRICTIONS:
            n = counts[day].get(restriction, 0)
            if n:
                h = (base - 10) * n / top
                y -= h
                svg.append(_rect(x, y, column * 0.8, h, COLOURS[restriction], f"{day} {restriction}: {n}"))
        svg.append(_text(x, base + 14, day[5:]))
    svg.append(_text(2, 12, str(top)))
    for i, restriction in enumerate(RESTRICTIONS):
        svg.append(_rect(30 + i * 110, height - 12, 10, 10, COLOURS[restriction], restriction))
        svg.append(_text(44 + i * 110, height - 3, restriction))
    return svg


def _per_member(activity: Activity) -> etree._Element:
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for _, member, restriction, n in activity.stored:
        totals[member][restriction] += n
    table = el("table", {"class": "members"}, el("tr", None, el("th", None, "Reporting CSIRT"),
                                                 *(el("th", None, r) for r in RESTRICTIONS)))
    for member in sorted(totals):
        table.append(el("tr", None, el("td", None, member),
                        *(el("td", None, str(totals[member].get(r, 0))) for r in RESTRICTIONS)))
    return table


def _bars(rows: Sequence[tuple[str, int]], unit: str, colour: str) -> etree._Element:
    if not rows:
        return el("p", None, f"None ({unit}: 0).")
    top = max(n for _, n in rows) or 1
    svg = _svg(len(rows) * (_BAR + 6) + 6, unit)
    for i, (label, n) in enumerate(rows):
        y = 6 + i * (_BAR + 6)
        svg.append(_rect(220, y, (_WIDTH - 280) * n / top, _BAR, colour, f"{label}: {n} {unit}"))
        svg.append(_text(4, y + 13, label[:34]))
        svg.append(_text(224 + (_WIDTH - 280) * n / top, y + 13, str(n)))
    return svg


def peak_depths(outbox: Sequence[tuple[datetime, datetime | None]], days: Sequence[str]) -> dict[str, int]:
    """The most items waiting at once on each of ``days`` (UTC, oldest first), from each item's (queued,
    published or None while waiting). An item published in the instant another is queued has left
    first, so that one at a time through an idle outbox is a depth of 1."""
    events = sorted([(queued, 1) for queued, _ in outbox]
                    + [(published, -1) for _, published in outbox if published is not None])
    peaks, depth, i = {}, 0, 0
    for day in days:
        while i < len(events) and events[i][0].date().isoformat() < day:
            depth += events[i][1]
            i += 1
        peak = depth  # what was still waiting when the day began
        while i < len(events) and events[i][0].date().isoformat() == day:
            depth += events[i][1]
            peak = max(peak, depth)
            i += 1
        peaks[day] = peak
    return peaks


def _peaks(peaks: dict[str, int], days: list[str]) -> etree._Element:
    top = max(peaks.values(), default=0)
    if not top:
        return el("p", None, f"Nothing queued in the last {DAYS} days.")
    height, base, column = 180, 160, (_WIDTH - 40) / len(days)
    svg = _svg(height, "outbox depth per day")
    for i, day in enumerate(days):
        x = 30 + i * column
        if peaks[day]:
            h = (base - 10) * peaks[day] / top
            svg.append(_rect(x, base - h, column * 0.8, h, "#ff9f00", f"{day} peak: {peaks[day]} waiting"))
        svg.append(_text(x, base + 14, day[5:]))
    svg.append(_text(2, 12, str(top)))
    return svg


def _delays(activity: Activity, days: list[str]) -> etree._Element:
    per_day: dict[str, list[float]] = defaultdict(list)
    for queued, published in activity.outbox:
        if published is not None:
            per_day[published.date().isoformat()].append((published - queued).total_seconds())
    if not per_day:
        return el("p", None, f"Nothing published in the last {DAYS} days.")
    figures = {day: (statistics.median(v), p95(v)) for day, v in per_day.items()}
    return _percentiles(figures, days, "publish delay per day", MEDIAN)


def _arrivals(activity: Activity, days: list[str]) -> list[etree._Element]:
    """The receiving side's delivery latency (feed/arrivals.py), one chart per reporting CSIRT."""
    found = arrivals.per_member_and_day(activity.arrivals, days)
    if not found:
        return [el("p", None, f"Nothing mirrored in the last {DAYS} days.")]
    shown: list[etree._Element] = [el("p", None, ARRIVAL_NOTE)]
    for member in sorted(found):
        figures = {day: (a.median, a.p95) for day, a in found[member].items() if a.timed}
        ahead = {day: a.ahead for day, a in found[member].items() if a.ahead}
        timed = sum(a.timed for a in found[member].values())
        untimed = sum(a.untimed for a in found[member].values())
        shown.append(el("h3", None, f"{member}: {timed} items"
                        + (f", {sum(ahead.values())} of them before the time they state" if ahead else "")
                        + (f"; {untimed} stating no time, not charted" if untimed else "")))
        if figures:
            shown.append(_percentiles(figures, days, f"arrival delay per day from {member}", ARRIVAL_MEDIAN,
                                      ahead))
    return shown


ARRIVAL_NOTE = ("From the time the originator's signed document states (its ReportTime, or GenerationTime)"
                " to when this bridge first stored the item; the first version received of each item. It"
                " includes any time between writing the report and publishing it. Each member's clock is"
                " its own and may differ from ours: an item stored before the time it states is counted as"
                " 0 and marked below its day, with how many.")


def _percentiles(figures: dict[str, tuple[float, float]], days: list[str], label: str, colour: str,
                 ahead: dict[str, int] | None = None) -> etree._Element:
    """Median and 95th percentile bars per day (``figures``: day -> seconds); ``ahead``: per day, how
    many items were counted as 0 for being stored before the time they state."""
    top = max(p for _, p in figures.values()) or 1.0
    height, base, column = 195, 160, (_WIDTH - 40) / len(days)
    svg = _svg(height, label)
    for i, day in enumerate(days):
        x = 30 + i * column
        svg.append(_text(x, base + 14, day[5:]))
        if ahead and ahead.get(day):
            svg.append(_rect(x, base + 17, column * 0.75, 5, AHEAD,
                             f"{day}: {ahead[day]} stored before the time they state (clocks differ),"
                             " counted as 0"))
        if day not in figures:
            continue
        median, high = figures[day]
        svg.append(_rect(x, base - (base - 10) * high / top, column * 0.35, (base - 10) * high / top, P95,
                         f"{day} p95: {_duration(high)}"))
        svg.append(_rect(x + column * 0.4, base - (base - 10) * median / top, column * 0.35,
                         (base - 10) * median / top, colour, f"{day} median: {_duration(median)}"))
    svg.append(_text(2, 12, _duration(top)))
    legend = [("95th percentile", P95), ("median", colour)]
    if ahead:
        legend.append(("before stated time", AHEAD))
    for i, (name, shade) in enumerate(legend):
        svg.append(_rect(30 + i * 140, height - 12, 10, 10, shade, name))
        svg.append(_text(44 + i * 140, height - 3, name))
    return svg


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds * 1000:.1f} ms"


def _peers(peers: Sequence[PeerHealth]) -> etree._Element:
    if not peers:
        return el("p", None, "No peers yet.")
    table = el("table", {"class": "peers"}, el("tr", None, *(el("th", None, h) for h in (
        "", "Peer", "Since", "Last error"))))
    for peer in peers:
        dot = el("svg", {"width": "12", "height": "12", "role": "img",
                         "aria-label": "reachable" if peer.reachable else "unreachable"},
                 el("circle", {"cx": "6", "cy": "6", "r": "5",
                               "fill": "#33a02c" if peer.reachable else "#d62728"}))
        error = f"{peer.condition}: {peer.text}" if peer.condition else ""
        table.append(el("tr", None, el("td", None, dot), el("td", None, peer.service),
                        el("td", None, peer.since.strftime("%Y-%m-%d %H:%M UTC")), el("td", None, error)))
    return table
