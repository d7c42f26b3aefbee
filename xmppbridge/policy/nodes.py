"""Restriction and purpose -> PubSub node name and node access model.

One table, consulted by every shell, so that no shell grows its own idea of what a restriction means.
IODEF 2.0 TLP aliases map onto the IODEF restriction they stand for (RFC 7970 §3.3.1); ``default``
means "as pre-agreed" and keeps its own node.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xmppbridge.errors import InputRejected

if TYPE_CHECKING:
    from xmppbridge.iodef.model import Incident

TLP_ALIASES = {"white": "public", "green": "partner", "amber": "need-to-know", "red": "private"}
RESTRICTIONS = ("public", "partner", "need-to-know", "private", "default")
PURPOSES = ("traceback", "mitigation", "reporting", "watch", "other")

# Ordered from widest to narrowest audience; used to refuse widening.
_WIDTH = {"public": 0, "partner": 1, "default": 2, "need-to-know": 3, "private": 4}


def canonical_restriction(value: str | None) -> str:
    """The node-key restriction for an attribute value as written (``None`` -> Incident default ``private``).

    ``ext-value`` and unknown values map to ``private``: an audience we cannot name is treated as the
    narrowest one, never wider.
    """
    if value is None:
        return "private"
    value = TLP_ALIASES.get(value, value)
    return value if value in RESTRICTIONS else "private"


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
