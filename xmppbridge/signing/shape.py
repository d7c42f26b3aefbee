"""The only shapes of signed document the verifier accepts; everything else is refused before any crypto.

Signature wrapping works by making the verifier check one thing and the application use another (W3C, "XML
Signature Best Practices", 2013). We rule it out structurally: no IODEF-Document inside the document,
exactly one originator signature in an IODEF ``AdditionalData``, optionally followed by relay signatures,
each alone in a trailing ``AdditionalData meaning="relay-signature"`` of the same parent, and every
signature made of SignedInfo, SignatureValue and KeyInfo only (no ``ds:Object`` to hide a copy in), with
exactly one whole-document reference (``URI=""``), the enveloped transform and allowed algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from xmppbridge.errors import SignatureRejected
from xmppbridge.iodef.model import VERSION_BY_NS
from xmppbridge.signing.dsig import (
    ALLOWED_DIGESTS,
    ALLOWED_SIGNATURE_METHODS,
    ALLOWED_TRANSFORMS,
    C14N_METHODS,
    DS_NS,
    DS_SIGNATURE,
    ENVELOPED,
    child,
    children,
    is_weak,
)

RELAY_MEANING = "relay-signature"
_DS = f"{{{DS_NS}}}"  # Clark notation: lxml finds it faster than through a prefix mapping
_SIGNATURE_CHILDREN = ("SignedInfo", "SignatureValue", "KeyInfo")
_SIGNATURE_CHILD_TAGS = frozenset(_DS + name for name in _SIGNATURE_CHILDREN)


@dataclass(frozen=True)
class Layout:
    """Where the signatures of an accepted shape sit."""

    originator: etree._Element  # ds:Signature
    relays: tuple[etree._Element, ...]  # ds:Signature of each relay, oldest first

    @property
    def originator_digest(self) -> str:
        """The DigestValue of the originator's signature: the digest of what the originator signed, the
        same for a document however many relays have signed it since (each relay's covers the document
        as it got it, and leaves the originator's as it was)."""
        signed_info = child(self.originator, f"{_DS}SignedInfo")
        reference = None if signed_info is None else child(signed_info, f"{_DS}Reference")
        return "" if reference is None else _text(child(reference, f"{_DS}DigestValue")).strip()


def signature_layout(root: etree._Element, ns: str) -> Layout:
    """The signatures of ``root`` (an IODEF-Document in namespace ``ns``) if their shape is acceptable."""
    signatures = list(root.iter(DS_SIGNATURE))
    if not signatures:
        raise SignatureRejected("the document is not signed (no ds:Signature)", reason="signature-missing")
    # A second IODEF-Document hidden inside the signed one invites confusion about what was signed.
    documents = [e for e in root.iter("{*}IODEF-Document") if etree.QName(e).namespace in VERSION_BY_NS]
    if len(documents) > 1:
        raise SignatureRejected("the document contains a nested IODEF-Document", reason="signature-wrapping")
    for signature in signatures:
        parent = signature.getparent()
        if parent is None or parent.tag != f"{{{ns}}}AdditionalData":
            where = root.getroottree().getpath(signature)
            raise SignatureRejected(
                f"a signature must sit in an IODEF AdditionalData element, found one at {where}",
                reason="signature-misplaced",
            )
    relays = [s for s in signatures if _holder(s).get("meaning") == RELAY_MEANING]
    originators = [s for s in signatures if _holder(s).get("meaning") != RELAY_MEANING]
    if len(originators) != 1:
        raise SignatureRejected(
            f"the document carries {len(originators)} originator signatures; exactly one is accepted "
            f"(plus relay signatures in AdditionalData meaning={RELAY_MEANING!r})",
            reason="signature-wrapping",
        )
    originator = originators[0]
    _check_relay_holders(originator, relays)
    for signature in signatures:
        _check_signature(signature)
    return Layout(originator, tuple(relays))


def location(root: etree._Element, signature: etree._Element) -> str:
    """The signxml location of ``signature``'s parent, with positions so that it names exactly that
    element among same-named siblings, e.g. ``./{ns}Incident[2]/{ns}AdditionalData[3]/``."""
    steps: list[str] = []
    node = signature.getparent()
    while node is not None and node is not root:
        position = 1 + sum(1 for sibling in node.itersiblings(preceding=True) if sibling.tag == node.tag)
        steps.append(f"{node.tag}[{position}]")
        node = node.getparent()
    # Safe as a path: the only character that could derail it, "}" in a namespace URI, is refused by
    # libxml2 when the document is parsed.
    return "./" + "".join(f"{step}/" for step in reversed(steps))


def _holder(signature: etree._Element) -> etree._Element:
    parent = signature.getparent()
    assert parent is not None  # checked by signature_layout
    return parent


def _check_relay_holders(originator: etree._Element, relays: list[etree._Element]) -> None:
    if not relays:
        return
    holder = _holder(originator)
    parent = holder.getparent()
    relay_holders = [_holder(relay) for relay in relays]
    # Relay i covers everything before it; they must be the last children, after the originator's, so
    # that removing the later ones gives back exactly what each earlier signer signed.
    siblings = [e for e in parent if isinstance(e.tag, str)] if parent is not None else []  # no comments
    trailing = siblings[-len(relay_holders):]
    if trailing != relay_holders or holder in trailing:
        raise SignatureRejected(
            "relay signatures must be the last AdditionalData elements after the originator's signature",
            reason="signature-wrapping",
        )
    for relay_holder in relay_holders:
        text = (relay_holder.text or "").strip() + "".join((c.tail or "").strip() for c in relay_holder)
        if len(relay_holder) != 1 or text:
            raise SignatureRejected(
                "a relay-signature AdditionalData must hold its signature and nothing else",
                reason="signature-wrapping",
            )


def _check_signature(signature: etree._Element) -> None:
    for part in signature:
        if not isinstance(part.tag, str):
            continue  # comments and PIs are not part of the signature (wire form drops them anyway)
        if part.tag not in _SIGNATURE_CHILD_TAGS:
            qname = etree.QName(part)
            raise SignatureRejected(
                f"unexpected {qname.localname} in ds:Signature: only SignedInfo, SignatureValue and KeyInfo "
                "are accepted (a ds:Object could smuggle unsigned content)",
                reason="signature-wrapping",
            )
    signed_info = child(signature, f"{_DS}SignedInfo")
    if signed_info is None:
        raise SignatureRejected("ds:Signature has no SignedInfo", reason="malformed-signature")
    if not _text(child(signature, f"{_DS}SignatureValue")).strip():
        raise SignatureRejected("ds:Signature has no SignatureValue", reason="malformed-signature")
    references = children(signed_info, f"{_DS}Reference")
    if len(references) != 1 or references[0].get("URI") != "":
        uris = [r.get("URI") for r in references]
        raise SignatureRejected(
            f'the signature must have exactly one Reference with URI="" (the whole document); found {uris}',
            reason="bad-reference",
        )
    reference = references[0]
    _check_algorithm(child(signed_info, f"{_DS}CanonicalizationMethod"), C14N_METHODS, "canonicalization")
    _check_algorithm(child(signed_info, f"{_DS}SignatureMethod"), ALLOWED_SIGNATURE_METHODS, "signature")
    _check_algorithm(child(reference, f"{_DS}DigestMethod"), ALLOWED_DIGESTS, "digest")
    transforms = [transform for holder in children(reference, f"{_DS}Transforms")
                  for transform in children(holder, f"{_DS}Transform")]
    for transform in transforms:
        _check_algorithm(transform, ALLOWED_TRANSFORMS, "transform")
    if ENVELOPED not in [t.get("Algorithm") for t in transforms]:
        # Without it the signature would have to cover itself: it cannot verify, so say why up front.
        raise SignatureRejected("the reference lacks the enveloped-signature transform",
                                reason="bad-reference")
    if not _text(child(reference, f"{_DS}DigestValue")).strip():
        raise SignatureRejected("the reference has no DigestValue", reason="malformed-signature")


def _text(element: etree._Element | None) -> str:
    """``findtext`` semantics: "" for a missing element or one without text."""
    return "" if element is None else element.text or ""


def _check_algorithm(element: etree._Element | None, allowed: frozenset[str], what: str) -> None:
    if element is None:
        raise SignatureRejected(f"the signature names no {what} algorithm", reason="malformed-signature")
    algorithm = element.get("Algorithm", "")
    if algorithm in allowed:
        return
    if is_weak(algorithm):
        raise SignatureRejected(
            f"{what} algorithm {algorithm} is too weak (SHA-1/MD5); ask the sender to sign with SHA-256",
            reason="weak-algorithm",
        )
    raise SignatureRejected(f"{what} algorithm {algorithm!r} is not accepted", reason="unsupported-algorithm")
