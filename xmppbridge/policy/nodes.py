"""Restriction and purpose -> PubSub node name and node access model.

One table, consulted by every shell, so that no shell grows its own idea of what a restriction means.
IODEF 2.0 TLP aliases map onto the IODEF restriction they stand for (RFC 7970 §3.3.1); ``default``
means "as pre-agreed" and keeps its own node.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from xmppbridge.errors import InputRejected

if TYPE_CHECKING:
    from xmppbridge.iodef.model import Incident

TLP_ALIASES = {"white": "public", "green": "partner", "amber": "need-to-know", "red": "private"}
# TLP 2.0 labels (FIRST, "Traffic Light Protocol (TLP) Version 2.0", 2022), which IODEF 2.0 carries as
# restriction="ext-value" ext-restriction="TLP:CLEAR" (RFC 7970 §3.3.1 lists only TLP 1.0's colours).
# AMBER+STRICT limits sharing to the originator's own organisation: node key private, and never shared
# (``check_shareable``).
TLP2_LABELS = {"clear": "public", "green": "partner", "amber": "need-to-know", "amber+strict": "private",
               "red": "private"}
ORIGINATOR_ONLY = "amber+strict"
RESTRICTIONS = ("public", "partner", "need-to-know", "private", "default")
PURPOSES = ("traceback", "mitigation", "reporting", "watch", "other")

# Ordered from widest to narrowest audience; used to refuse widening.
_WIDTH = {"public": 0, "partner": 1, "default": 2, "need-to-know": 3, "private": 4}


def canonical_restriction(value: str | None, ext: str | None = None) -> str:
    """The node-key restriction for an attribute value as written (``None`` -> Incident default ``private``).

    ``ext-value`` with a TLP 2.0 label in ``ext`` (the ``ext-restriction`` attribute) maps as FIRST
    defines the label; other ``ext-value``s and unknown values map to ``private``: an audience we cannot
    name is treated as the narrowest one, never wider.
    """
    if value is None:
        return "private"
    if value == "ext-value":
        return TLP2_LABELS.get(tlp2_label(ext) or "", "private")
    value = TLP_ALIASES.get(value, value)
    return value if value in RESTRICTIONS else "private"


def tlp2_label(ext: str | None) -> str | None:
    """``TLP:AMBER+STRICT``, ``amber+strict`` -> ``amber+strict``; None for anything else."""
    label = (ext or "").strip().lower().removeprefix("tlp:")
    return label if label in TLP2_LABELS else None


def canonical_purpose(value: str) -> str:
    """Purposes outside the registry (``ext-value``) publish under ``other``."""
    return value if value in PURPOSES else "other"


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
    access_model: str  # "open" or "whitelist": the only models Prosody offers (LAB-NOTES §5)


def node_access(restriction: str) -> NodeAccess:
    """Only public items go to an open node; everything else needs an explicit whitelist entry."""
    return NodeAccess("open" if canonical_restriction(restriction) == "public" else "whitelist")


def is_wider(a: str, b: str) -> bool:
    """True when restriction ``a`` admits a wider audience than ``b``."""
    return _WIDTH[canonical_restriction(a)] < _WIDTH[canonical_restriction(b)]


# -- restriction at the source ----------------------------------------------------------------------------


def node_restriction(node: str) -> str | None:
    """The restriction a node name carries (``<prefix>/<restriction>/<purpose>``), None if it has none."""
    parts = node.rsplit("/", 2)
    return parts[1] if len(parts) == 3 and parts[1] in RESTRICTIONS else None


def check_publishable(node: str, incident: Incident) -> None:
    """Refuse to put ``incident``'s document on ``node`` when the node is readable more widely than the
    document's narrowest marking allows, or when the node name does not say who can read it.

    Call it right before publishing: whatever built the item (split, relay, a hand-filled outbox), the
    node must not leak it (DIGEST §5). Raises ``InputRejected`` with reason ``restriction-wider-than-node``.
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
