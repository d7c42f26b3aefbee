"""The small values the store's interfaces pass instead of long argument lists: where an item lives
(``ItemRef``), a signed document as one pubsub item (``SignedItem``) and an input we refused
(``Refused``). Pure data: the receive path, the publisher and the store's tables share them.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class SignedItem:
    """A signed IODEF document as one pubsub item of a node, before it is known on which service
    (the outbox queues it; it becomes an entry once published or mirrored)."""

    node: str
    item_id: str
    xml: bytes  # the signed document, byte for byte; empty for a retraction
    incident: Incident  # the representative Incident (narrowest restriction of the document's)
    version: str  # IODEF "1.0" | "2.0"
    signer: Signer = Signer()

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
