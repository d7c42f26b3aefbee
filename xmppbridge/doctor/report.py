"""What `xmppbridge doctor` found: one ``Check`` per line, a ``Report`` of them, as text or JSON.

Pure data and formatting, shared by the doctor process and the running bridge, which runs the XMPP
checks over its own connection when asked and hands them back as JSON (``relay.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "warn", "FAIL"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "FAIL")


@dataclass(frozen=True)
class Check:
    name: str  # what was checked, e.g. "component connection" or "peer pubsub.b.test: reachable"
    status: Status
    found: str  # what was found, in words an operator can act on
    fix: str = ""  # how to fix it; empty when there is nothing to do

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @classmethod
    def of(cls, checks: Iterable[Check]) -> Report:
        return cls(tuple(checks))

    @property
    def failed(self) -> bool:
        return any(check.status == "FAIL" for check in self.checks)

    def count(self, status: Status) -> int:
        return sum(check.status == status for check in self.checks)


def format_text(report: Report) -> str:
    """One line per check: status, name, what was found, and the fix after an arrow."""
    width = max((len(check.name) for check in report.checks), default=0)
    lines = []
    for check in report.checks:
        line = f"{check.status:4} {check.name:{width}}  {check.found}"
        if check.fix:
            line += f" -> {check.fix}"
        lines.append(line)
    lines.append(f"{report.count('ok')} ok, {report.count('warn')} warn, {report.count('FAIL')} FAIL")
    return "\n".join(lines)


def report_json(report: Report) -> str:
    return json.dumps({"failed": report.failed, "checks": checks_to_data(report.checks)})


def checks_to_data(checks: Iterable[Check]) -> list[dict[str, str]]:
    return [asdict(check) for check in checks]


def checks_from_data(data: Any) -> list[Check]:
    """The inverse of ``checks_to_data``; ValueError for anything else (it comes through the store)."""
    if not isinstance(data, list):
        raise ValueError("checks must be a list")
    checks = []
    for entry in data:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str)
                                                  for k in ("name", "status", "found", "fix")):
            raise ValueError(f"not a check: {entry!r}")
        checks.append(Check(entry["name"], entry["status"], entry["found"], entry["fix"]))
    return checks
