"""Whether one member really mirrors what another published: the truth behind the demo's READY line.

An entry counts only when the receiver stores exactly the signed bytes the publisher stored (which it
does only after verifying the signature); an item the receiver holds in quarantine is missing with the
quarantine's reason, so the demo can say why instead of waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from xmppbridge.store import Store

# What `xmppbridge publish` prints for each item it published (cli.cmd_publish).
_PUBLISHED = re.compile(
    r"^(?P<file>.+): published to (?P<node>\S+) on (?P<service>\S+) as item (?P<item>\S+)$")


@dataclass(frozen=True)
class Published:
    file: str
    service: str
    node: str
    item_id: str


@dataclass(frozen=True)
class Missing:
    item: Published
    reason: str | None  # the receiver's quarantine reason, or None when nothing arrived at all

    def describe(self) -> str:
        where = f"{self.item.node} item {self.item.item_id} ({Path(self.item.file).name})"
        if self.reason is None:
            return f"{where}: not received"
        return f"{where}: quarantined as {self.reason}"


def published_by(output: str) -> list[Published]:
    """The items a ``publish`` run reports as published, from its standard output."""
    return [Published(m["file"], m["service"], m["node"], m["item"])
            for m in map(_PUBLISHED.match, output.splitlines()) if m]


def unreachable(receiver: Path, service: str) -> bool:
    """Whether the receiver's bridge last found ``service`` unreachable (its peer health)."""
    with Store(receiver) as theirs:
        return any(not peer.reachable and peer.service == service for peer in theirs.peers())


def missing_at(receiver: Path, publisher: Path, items: list[Published]) -> list[Missing]:
    """The ``items`` that the receiver's store (``receiver``, SQLite) does not hold byte-equal to the
    publisher's (``publisher``), each with the receiver's quarantine reason if it has one."""
    with Store(publisher) as ours, Store(receiver) as theirs:
        reasons = {(r.service, r.node, r.item_id): r.reason for r in theirs.rejects(limit=10_000)}
        missing = []
        for item in items:
            key = (item.service, item.node, item.item_id)
            sent, got = ours.find_entry(*key), theirs.find_entry(*key)
            if sent is None or got is None or got.deleted or got.xml != sent.xml:
                missing.append(Missing(item, reasons.get(key)))
        return missing
