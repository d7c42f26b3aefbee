"""What an operator does with quarantined items: release them once the reason is fixed, or purge them.

Release runs the item through the receive path again (``receive.mirror_item``: verify, classify,
authorise, store) with today's configuration, so a new trust anchor, a refreshed CRL or a widened
``allow_domains`` takes effect. What passes is mirrored and the record is kept as released (for the
audit trail, until purged); what fails stays held with its new reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from xmppbridge.errors import InputRejected
from xmppbridge.jids import InvalidJID, service_key
from xmppbridge.paths.receive import message_of, mirror_item
from xmppbridge.paths.relay import RELAY_SOURCE
from xmppbridge.signing.verify import TrustStore
from xmppbridge.store import Reject
from xmppbridge.store.contracts import Entries, Quarantine
from xmppbridge.store.items import ItemRef

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
BATCH = 1000


class Releasing(Entries, Quarantine, Protocol):
    """What a release reads and writes: the quarantine, and the entries it mirrors into."""


@dataclass(frozen=True)
class Release:
    record: Reject
    released: bool
    outcome: str  # "mirrored: new|updated|unchanged", "superseded: ...", or why it is still held


def release(store: Releasing, trust: TrustStore, records: list[Reject], *, max_bytes: int,
            follows: Callable[[str], bool], schema_mode: str = "strict") -> list[Release]:
    """Verify ``records`` again, oldest first (so that versions of one item are applied in order).
    ``follows``: whether a service is subscribed to now (``Config.follows``); an item received from any
    other stays held."""
    return [_release_one(store, trust, record, max_bytes=max_bytes, follows=follows, schema_mode=schema_mode)
            for record in sorted(records, key=lambda r: r.id)]


def held(store: Quarantine, *, reason: str | None = None) -> list[Reject]:
    """Every record still held (optionally only those held for ``reason``)."""
    return store.rejects(limit=store.count_rejects(), held_only=True, reason=reason)


def _release_one(store: Releasing, trust: TrustStore, record: Reject, *, max_bytes: int,
                 follows: Callable[[str], bool], schema_mode: str) -> Release:
    if not record.held:
        return Release(record, False, f"already released ({record.resolution})")
    if record.service is None or record.node is None or record.item_id is None:
        return Release(record, False, "not an item of a pubsub node; nothing to mirror it as")
    if record.source == RELAY_SOURCE:
        # The item itself was mirrored; what was refused is relaying it, by the policy (relay:,
        # audiences:). Releasing cannot override that: purge the record once it has been read.
        return Release(record, False, "refused by the relay policy, not by the receive path: the item is "
                                      "mirrored; change relay: or audiences: to relay such items, and "
                                      "purge this record")
    if record.source == "xmpp" and not follows(record.service):
        return Release(record, False, f"unknown-source: {record.service} is not one of the subscriptions")
    if record.raw_size > len(record.raw):
        return Release(record, False, f"only {len(record.raw)} of its {record.raw_size} bytes were kept")
    try:
        service = service_key(record.service)  # records of earlier versions may carry another spelling
    except InvalidJID:
        service = record.service
    existing = store.find_entry(service, record.node, record.item_id)
    if existing is not None and existing.updated_at > (record.last_seen_at or record.received_at):
        # The peer has sent (or retracted) a later version since: releasing this one would roll it back.
        resolution = "superseded: the mirror holds a later version of this item"
        store.release_reject(record.id, resolution)
        return Release(record, True, resolution)
    try:
        status = mirror_item(store, trust, ItemRef(service, record.node, record.item_id), record.raw,
                             max_bytes=max_bytes, schema_mode=schema_mode)
    except InputRejected as exc:
        store.refuse_reject_again(record.id, exc.reason, message_of(exc))
        return Release(record, False, f"{exc.reason}: {exc}")
    store.release_reject(record.id, f"mirrored: {status}")
    return Release(record, True, f"mirrored: {status}")


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``1w2d``... -> a timedelta; ``ValueError`` otherwise."""
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ValueError(f"{text!r} is not an age such as 30d, 12h or 1w")
    return sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta())
