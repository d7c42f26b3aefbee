"""Restriction and purpose -> PubSub node name and node access model.

One table, consulted by every shell, so that no shell grows its own idea of what a restriction means.
IODEF 2.0 TLP aliases map onto the IODEF restriction they stand for (RFC 7970 §3.3.1); ``default``
means "as pre-agreed" and keeps its own node.
"""

from __future__ import annotations

from dataclasses import dataclass

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
