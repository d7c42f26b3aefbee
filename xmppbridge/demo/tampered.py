"""The two-member demo's refusal: a copy of a sample that A signs and that is then altered (one address
changed after the signature), put straight into A's outbox, as a document altered on its way would reach
B. B's bridge checks the signature, refuses the item as ``bad-digest`` and holds it in quarantine, so
``xmppbridge quarantine list`` and the operators' dashboard have a refusal to show, as a real consortium
soon has.

A publishes the copy under an IncidentID of its own (``A-2024-0999``), so the genuine samples stay as
they are at A and at B.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from xmppbridge.config.settings import load_config
from xmppbridge.demo.consortium import Member
from xmppbridge.paths.publish import Publisher
from xmppbridge.store import Store

INCIDENT = b"A-2024-0999"
ORIGINAL, ALTERED = b"198.51.100.23", b"198.51.100.99"  # an address of sample 01, signed, then changed


@dataclass(frozen=True)
class Tampered:
    sample: Path
    node: str
    item_id: str


def slip_into_outbox(member: Member, sample: Path) -> Tampered:
    """Sign a copy of ``sample`` with ``member``'s key, alter it, and queue it in its outbox, which its
    running bridge publishes as it is (the outbox holds what was already signed)."""
    data = sample.read_bytes().replace(b"A-2024-0101", INCIDENT)
    with Store(member.store) as store:
        [item] = Publisher.for_config(store, load_config(member.config_path)).prepare(data)
        assert ORIGINAL in item.xml  # the sample the demo alters
        store.enqueue(replace(item, xml=item.xml.replace(ORIGINAL, ALTERED)), source="demo:tampered")
    return Tampered(sample, item.node, item.item_id)


def refusal(receiver: Member, tampered: Tampered, timeout: float) -> str | None:
    """The reason ``receiver`` quarantined the tampered item for, once it did (None: not in time)."""
    deadline = time.monotonic() + timeout
    while True:
        with Store(receiver.store) as store:
            found = [r.reason for r in store.rejects(limit=100)
                     if (r.node, r.item_id) == (tampered.node, tampered.item_id)]
        if found or time.monotonic() > deadline:
            return found[0] if found else None
        time.sleep(0.5)
