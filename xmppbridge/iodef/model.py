"""What the bridge knows about an IODEF document after parsing and classification."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

NS_V1 = "urn:ietf:params:xml:ns:iodef-1.0"
NS_V2 = "urn:ietf:params:xml:ns:iodef-2.0"
VERSION_BY_NS = {NS_V1: "1.0", NS_V2: "2.0"}


@dataclass(frozen=True)
class Incident:
    """One Incident, classified. Times are timezone-aware UTC (a zone-less IODEF time is read as UTC)."""

    id_name: str  # IncidentID/@name: the issuing CSIRT's FQDN
    id: str  # IncidentID text
    instance: str | None  # IncidentID/@instance
    restriction_raw: str  # Incident/@restriction as written, "private" when absent
    restriction: str  # canonical node key: public | partner | need-to-know | private | default
    purpose: str  # Incident/@purpose as written
    report_time: datetime | None = None
    generation_time: datetime | None = None  # 2.0 only
    detect_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    title: str = ""  # first Description, for humans; may be empty
    alternative_ids: tuple[tuple[str, str], ...] = ()  # (name, id) pairs
    related_ids: tuple[tuple[str, str], ...] = ()  # RelatedActivity IncidentIDs
    # Canonical narrowest restriction written anywhere in the Incident (itself included) or on a root-level
    # AdditionalData travelling with it. Publishing wider than this would leak a more restricted part
    # (RFC 7970 §3.3.1); None when not computed.
    narrowest_restriction: str | None = None

    @property
    def effective_restriction(self) -> str:
        """What the bridge routes and guards on: the narrowest marking inside the Incident, so that a
        public Incident with a private part never goes to a public node or feed (RFC 7970 §3.3.1)."""
        return self.narrowest_restriction or self.restriction

    @property
    def published_time(self) -> datetime | None:
        """ReportTime, else GenerationTime: what ROLIE uses as atom:published."""
        return self.report_time or self.generation_time


@dataclass
class Document:
    """A parsed, validated, classified IODEF document."""

    version: str  # "1.0" | "2.0"
    root: etree._Element  # IODEF-Document
    incidents: list[Incident]
    schema_errors: list[str] = field(default_factory=list)  # non-empty only in "warn" mode
