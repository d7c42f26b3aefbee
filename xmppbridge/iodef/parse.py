"""Parse untrusted XML: no DTD, no entities, no network, bounded size and depth.

Every path by which a document enters the bridge (files, pubsub items, HTTP bodies) goes through
``parse_untrusted``; nothing else in the package calls ``etree.fromstring`` on outside bytes.

What is refused, and why it is safe to let libxml2 see the bytes first: the parser never loads a DTD,
never resolves an entity and never touches the network, and libxml2 itself stops entity amplification
(billion laughs, quadratic blow-up) and nesting beyond 256 levels. A document that declares a DOCTYPE
at all is then refused, whatever it declares, so no entity ever reaches the rest of the bridge.
XInclude and ``xsi:schemaLocation`` are never processed (validation uses the local XSDs only).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lxml import etree

from xmppbridge.errors import InputRejected, MalformedXML, TooLarge, UnsafeXML

# Prosody closes the whole component stream for a stanza over ~512 KB (INTEROP.md §1); a signed
# document plus the publish IQ around it must stay well below that.
DEFAULT_MAX_BYTES = 400_000
# IODEF nests about a dozen levels deep; 64 leaves room for AdditionalData payloads without letting
# recursive code anywhere downstream (C14N, schema validation, wire form) run deep.
MAX_DEPTH = 64
# Markers of a DTD in the encodings an XML document may start in without a declaration (XML 1.0 App. F).
_DTD_MARKERS = tuple(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("utf-8", "utf-16-le", "utf-16-be")
)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def parse_untrusted(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """The root element of ``data``, or an ``InputRejected`` subclass saying why not."""
    if len(data) > max_bytes:
        raise TooLarge(
            f"document is {len(data)} bytes, over the limit of {max_bytes} bytes "
            "(raise limits.max_document_bytes, staying below the XMPP server's stanza limit)"
        )
    try:
        tree = etree.fromstring(data, parser=_parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise _classify_syntax_error(data, exc) from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeXML("documents with a DOCTYPE are refused (no DTDs or entity declarations)",
                        reason="doctype-forbidden")
    root = tree.getroot()
    # Both checks run inside libxml2 (tag filter, XPath): every item on every path pays for them.
    for _entity in root.iter(etree.Entity):
        raise UnsafeXML("entity references are refused", reason="entity-forbidden")
    if _TOO_DEEP(root):
        raise UnsafeXML(f"element nesting depth {_depth(root)} exceeds {MAX_DEPTH}", reason="too-deep")
    return root


def _classify_syntax_error(data: bytes, exc: etree.XMLSyntaxError) -> UnsafeXML | MalformedXML:
    # libxml2 stops some attacks before we get to see the parsed tree (billion laughs: "entity
    # amplification factor exceeded"; deep nesting: "Excessive depth"); report those as what they are,
    # not as a typo.
    if any(marker in data for marker in _DTD_MARKERS):
        return UnsafeXML(f"documents with a DOCTYPE are refused ({exc})", reason="doctype-forbidden")
    if "Excessive depth" in str(exc):
        return UnsafeXML(f"element nesting deeper than libxml2's limit, over {MAX_DEPTH} ({exc})",
                         reason="too-deep")
    return MalformedXML(f"not well-formed XML: {exc}")


# True when some element sits deeper than MAX_DEPTH (the root element is at depth 1).
_TOO_DEEP = etree.XPath("boolean(/" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")")


def _depth(root: etree._Element) -> int:
    """The exact depth, for the error message only."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in elem)
    return deepest


@dataclass(frozen=True)
class StoredDocument:
    """A document as the store keeps it, parsed at most once for all the indexes written with it (the
    text index and the indicator index each parsed it again, a parse per index for every delivery). It
    was verified when it came in; it is still parsed with the safe parser, as any bytes from a peer are,
    and with no size limit of its own: it was stored within the configured one."""

    xml: bytes

    @functools.cached_property
    def root(self) -> etree._Element | None:
        """The root element; None for a document that does not parse (it is still stored and listed)."""
        try:
            return parse_untrusted(self.xml, max_bytes=max(len(self.xml), 1))
        except InputRejected:
            return None
