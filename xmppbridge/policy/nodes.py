"""Restriction and purpose -> PubSub node name and node access model, and the checks that keep an item
off a node readable more widely than its marking.

What a restriction or purpose value means is IODEF's vocabulary (``iodef.markings``); this module decides
where such an item may go.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from xmppbridge.errors import InputRejected
from xmppbridge.iodef.markings import (
    ORIGINATOR_ONLY,
    RESTRICTIONS,
    canonical_purpose,
    canonical_restriction,
    is_wider,
    tlp2_label,
)

if TYPE_CHECKING:
    from xmppbridge.iodef.model import Incident


def node_name(prefix: str, restriction: str, purpose: str) -> str:
    return f"{prefix}/{canonical_restriction(restriction)}/{canonical_purpose(purpose)}"


def parse_node_name(prefix: str, node: str) -> tuple[str, str] | None:
    """(restriction, purpose) for a node under ``prefix``, else None."""
    parts = node.split("/")
    if len(parts) != 3 or parts[0] != prefix or parts[1] not in RESTRICTIONS:
        return None
    return parts[1], parts[2]


@dataclass(frozen=True)
class NodeAccess:
    access_model: str  # "open" or "whitelist": the only models Prosody offers (INTEROP.md §1)


def node_access(restriction: str) -> NodeAccess:
    """Only public items go to an open node; everything else needs an explicit whitelist entry."""
    return NodeAccess("open" if canonical_restriction(restriction) == "public" else "whitelist")


# -- restriction at the source ----------------------------------------------------------------------------


def node_restriction(node: str) -> str | None:
    """The restriction a node name carries (``<prefix>/<restriction>/<purpose>``), None if it has none."""
    parts = node.rsplit("/", 2)
    return parts[1] if len(parts) == 3 and parts[1] in RESTRICTIONS else None


def check_publishable(node: str, incident: Incident) -> None:
    """Refuse to put ``incident``'s document on ``node`` when the node is readable more widely than the
    document's narrowest marking allows, or when the node name does not say who can read it.

    Call it right before publishing: whatever built the item (split, relay, a hand-filled outbox), the
    node must not leak it (RFC 7970 §3.3.1). Raises ``InputRejected`` with reason
    ``restriction-wider-than-node``.
    """
    restriction = node_restriction(node)
    narrowest = incident.effective_restriction
    if restriction is None or is_wider(restriction, narrowest):
        raise InputRejected(
            f"incident {incident.id_name}:{incident.id} is marked {narrowest}; node {node!r} is "
            f"readable by {restriction or 'an unknown audience'}, which is wider",
            reason="restriction-wider-than-node",
        )


def check_shareable(root: etree._Element) -> None:
    """Refuse a document marked TLP:AMBER+STRICT anywhere: it is for the originator's organisation only,
    so no member's audience may hold it. Raises ``InputRejected`` with reason ``originator-only``."""
    for elem in root.iter(etree.Element):
        if elem.get("restriction", "").strip() == "ext-value" and \
                tlp2_label(elem.get("ext-restriction")) == ORIGINATOR_ONLY:
            raise InputRejected(
                f"{etree.QName(elem).localname} is marked TLP:AMBER+STRICT: its sharing is limited to the "
                "originator's own organisation, so it is not shared with any member",
                reason="originator-only")


def check_relayable(restriction: str, audience: Collection[str], allowed: Collection[str]) -> None:
    """Refuse to relay an item of ``restriction`` to ``audience`` (the JIDs that can read the relay's node).

    public and partner items may go to any consortium member; need-to-know (and "default", as pre-agreed)
    items only to members in ``allowed``, the ones the originator's policy names; private items are for
    the originator's direct recipients only and are never relayed. Raises ``InputRejected`` with reason
    ``relay-refused``.
    """
    restriction = canonical_restriction(restriction)
    if restriction in ("public", "partner"):
        return
    if restriction == "private":
        raise InputRejected("private items are never relayed", reason="relay-refused")
    outside = sorted(set(audience) - set(allowed))
    if outside:
        raise InputRejected(
            f"{restriction} items may be relayed only to the members the policy allows; "
            f"{', '.join(outside)} would read it",
            reason="relay-refused",
        )
