"""TAXII 2.1 filtering (§3.5): the ``match[id]``, ``match[type]``, ``match[version]`` and
``match[spec_version]`` URL parameters of the objects, manifest, object and versions endpoints.

Each takes a comma-separated list; an object must match one value of each filter given (§3.5.1).
``match[version]`` (§3.5.2) is ``last`` (the default), ``first``, ``all`` or a timestamp, and is applied
per object id over the versions the collection holds of it. An object's version is its ``modified``,
else its ``created``, else (a cyber-observable: its id is derived from its content, so it has a single
version) the time it was added, as in the manifest (§5.4.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from xmppbridge.iodef.classify import parse_datetime

FIELDS = ("id", "type", "version", "spec_version")
KEYWORDS = ("last", "first", "all")
SPEC_VERSION = "2.1"  # what every object here is (STIX 2.1 §3.1: spec_version, absent on SCOs alike)


@dataclass(frozen=True)
class Match:
    ids: frozenset[str] | None = None
    types: frozenset[str] | None = None
    versions: tuple[str, ...] = ("last",)
    spec_versions: frozenset[str] | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str], allowed: Sequence[str] = FIELDS) -> Match:
        """From a request's URL parameters; ``ValueError`` names a filter this endpoint does not have
        or a version that is neither a keyword nor a timestamp."""
        given: dict[str, list[str]] = {}
        for key, value in query.items():
            if not key.startswith("match["):
                continue
            field = key[len("match["):-1] if key.endswith("]") else ""
            if field not in allowed:
                raise ValueError(f"{key} is not a filter of this endpoint (it has "
                                 f"{', '.join(f'match[{f}]' for f in allowed)})")
            given[field] = [v.strip() for v in value.split(",") if v.strip()]
        for version in given.get("version", []):
            if version not in KEYWORDS and parse_datetime(version) is None:
                raise ValueError(f"match[version] must be last, first, all or a timestamp, not {version!r}")
        listed = {f: frozenset(v) for f, v in given.items() if f != "version"}
        versions = tuple(given.get("version") or ("last",))
        return cls(ids=listed.get("id"), types=listed.get("type"), versions=versions,
                   spec_versions=listed.get("spec_version"))

    def selects(self, obj: Mapping[str, Any]) -> bool:
        """Whether the object passes the id, type and spec_version filters."""
        spec_version = obj.get("spec_version", SPEC_VERSION)
        return ((self.ids is None or obj["id"] in self.ids)
                and (self.types is None or obj["type"] in self.types)
                and (self.spec_versions is None or spec_version in self.spec_versions))

    @property
    def latest_only(self) -> bool:
        return self.versions == ("last",)


def version_of(obj: Mapping[str, Any], added: str) -> str:
    """An object's version (``added``: when it was added, as a TAXII timestamp)."""
    return str(obj.get("modified") or obj.get("created") or added)


def chosen(versions: Sequence[str], wanted: Sequence[str]) -> set[str]:
    """Which of an object's ``versions`` ``match[version]`` values ``wanted`` select."""
    ordered = sorted(versions, key=_moment)
    picked: set[str] = set()
    for value in wanted:
        if value == "all":
            picked.update(ordered)
        elif value in ("first", "last"):
            picked.add(ordered[0 if value == "first" else -1])
        else:
            picked.update(v for v in ordered if _moment(v) == _moment(value))
    return picked


def _moment(timestamp: str) -> datetime:
    moment = parse_datetime(timestamp)
    assert moment is not None, timestamp  # versions are RFC 3339; requests are checked by Match.parse
    return moment
