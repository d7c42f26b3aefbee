"""IODEF's restriction and purpose vocabulary: the values a document may carry, the node key each maps
to, and which audience is wider.

One table, consulted by every layer (parsing, the store's indexes, policy, the feed), so that none grows
its own idea of what a restriction means. IODEF 2.0 TLP aliases map onto the IODEF restriction they
stand for (RFC 7970 §3.3.1); ``default`` means "as pre-agreed" and keeps its own node.
"""

from __future__ import annotations

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


def is_wider(a: str, b: str) -> bool:
    """True when restriction ``a`` admits a wider audience than ``b``."""
    return _WIDTH[canonical_restriction(a)] < _WIDTH[canonical_restriction(b)]
