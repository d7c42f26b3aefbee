"""Short human-readable texts about incidents, for chat messages and room posts."""

from __future__ import annotations

from datetime import datetime

from xmppbridge.errors import InputRejected
from xmppbridge.iodef.indicators import of_document
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.store.entries import Entry
from xmppbridge.store.items import Custodian

MAX_INDICATORS = 8


def indicators(xml: bytes, limit: int = MAX_INDICATORS) -> tuple[list[str], int]:
    """The distinct addresses, networks and domain names in a document (``iodef.indicators``), in
    document order: (first ``limit``, total).

    A document that does not parse gives none: a summary without hosts beats no summary."""
    try:
        found = of_document(xml)
    except InputRejected:
        return [], 0
    hosts = list(dict.fromkeys(i.value for i in found if i.is_host))
    return hosts[:limit], len(hosts)


def category(entry: Entry) -> str:
    return f"{entry.restriction}/{canonical_purpose(entry.incident.purpose)}"


def summary(entry: Entry, *, status: str, link: str) -> str:
    """Several lines: what, who, when, which hosts, where to read more. ``status``: "new" or "updated"
    for a notification, anything else for an answer to `show`."""
    incident = entry.incident
    word = {"new": "New ", "updated": f"Updated (revision {entry.revision}) "}.get(status, "")
    lines = [f"{word}[{category(entry)}] {incident.title or '(no description)'}",
             f"Incident {incident.id_name}:{incident.id} (#{entry.id}), reported by {incident.id_name}"
             f" ({_signer(entry.signer_subject)})"]
    times = [(label, value) for label, value in (
        ("detected", incident.detect_time), ("started", incident.start_time), ("ended", incident.end_time),
        ("reported", incident.report_time or incident.generation_time)) if value is not None]
    if times:
        lines.append("Times: " + ", ".join(f"{label} {_time(value)}" for label, value in times))
    if entry.custody:  # relayed: the originator, then each relay
        lines.append("Custody: " + " -> ".join(_hop(hop) for hop in entry.custody))
    found, total = indicators(entry.xml)
    if found:
        more = f" (+{total - len(found)} more)" if total > len(found) else ""
        lines.append("Hosts: " + ", ".join(found) + more)
    lines.append(f"Feed: {link}")
    return "\n".join(lines)


def one_line(entry: Entry) -> str:
    stamp = _time(entry.updated_at)
    return f"#{entry.id} {entry.incident.id} [{category(entry)}] {stamp} {entry.incident.title[:80]}"


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _hop(hop: Custodian) -> str:
    """Short, for a chat line: the member (or the subject's CN), its role and time."""
    name = hop.member or _signer(hop.subject).removeprefix("signed by ")
    return f"{name} ({hop.role}{', ' + _time(hop.at) if hop.at is not None else ''})"


def _signer(subject: str) -> str:
    """The CN of an RFC 4514 subject, which is what a person recognises; the whole subject otherwise."""
    for part in subject.split(","):
        name, _, value = part.strip().partition("=")
        if name.upper() == "CN" and value:
            return f"signed by {value}"
    return f"signed by {subject}" if subject else "unsigned"
