"""The small values the store's interfaces pass instead of long argument lists: where an item lives
(``ItemRef``), a signed document as one pubsub item (``SignedItem``) with who held it on its way
(``Custodian``), and an input we refused (``Refused``). Pure data: the receive path, the publisher and
the store's tables share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from xmppbridge.iodef.model import Incident


@dataclass(frozen=True)
class ItemRef:
    """One pubsub item: its service (a JID, in the store's spelling), node and item id."""

    service: str
    node: str
    item_id: str

    def __str__(self) -> str:  # how the logs name an item
        return f"{self.item_id} on {self.service}/{self.node}"


@dataclass(frozen=True)
class Signer:
    """Who signed a document: the certificate's subject and its SHA-256 fingerprint ("" when unsigned,
    as a retraction is)."""

    subject: str = ""
    fingerprint: str = ""


ORIGINATOR, RELAY = "originator", "relay"


@dataclass(frozen=True)
class Custodian:
    """One signer in a relayed document's custody chain (``Verified.chain``): the originator, then each
    relay in the order they forwarded it.

    ``at`` is when that hop happened as far as this bridge can tell, since XML signatures carry no time:
    for the originator the time its signed document states (GenerationTime/ReportTime), for the relay
    that handed it to us when we received it, for our own relay when we relayed it; None for a relay
    further up the chain (nothing records it)."""

    role: str  # ORIGINATOR | RELAY
    subject: str
    fingerprint: str
    at: datetime | None = None
    member: str = ""  # the registry's name for the signer, when it is a member's certificate


@dataclass(frozen=True)
class SignedItem:
    """A signed IODEF document as one pubsub item of a node, before it is known on which service
    (the outbox queues it; it becomes an entry once published or mirrored)."""

    node: str
    item_id: str
    xml: bytes  # the signed document, byte for byte; empty for a retraction
    incident: Incident  # the representative Incident (narrowest restriction of the document's)
    version: str  # IODEF "1.0" | "2.0"
    signer: Signer = Signer()  # the originator, who speaks for the incident: trust rests on it alone
    custody: tuple[Custodian, ...] = ()  # for a relayed document its chain, originator first; else empty

    def on(self, service: str) -> ItemRef:
        return ItemRef(service, self.node, self.item_id)


@dataclass(frozen=True)
class Refused:
    """An input refused and kept in the quarantine: what, from where and why. ``item`` is None for
    inputs that never named one (a file or an HTTP body that did not parse)."""

    source: str  # e.g. "xmpp", "cli:<file>", "http"
    reason: str  # short stable code (InputRejected.reason)
    message: str
    raw: bytes  # exactly as received
    item: ItemRef | None = None
