"""Parse untrusted XML: no DTD, no entities, no network, bounded size and depth.

Every path by which a document enters the bridge (files, pubsub items, HTTP bodies) goes through
``parse_untrusted``; nothing else in the package calls ``etree.fromstring`` on outside bytes.
"""

from __future__ import annotations

from lxml import etree

from xmppbridge.errors import MalformedXML, TooLarge, UnsafeXML

# Prosody closes the whole component stream for a stanza over ~512 KB (LAB-NOTES §1); a signed
# document plus the publish IQ around it must stay well below that.
DEFAULT_MAX_BYTES = 400_000
MAX_DEPTH = 64


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
        # libxml2 stops some DOCTYPE attacks (billion laughs: "entity amplification factor exceeded")
        # before we get to see the DOCTYPE; report those as what they are, not as a typo.
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            raise UnsafeXML(
                f"documents with a DOCTYPE are refused ({exc})", reason="doctype-forbidden"
            ) from None
        raise MalformedXML(f"not well-formed XML: {exc}") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeXML("documents with a DOCTYPE are refused (no DTDs or entity declarations)",
                        reason="doctype-forbidden")
    root = tree.getroot()
    for elem in root.iter():
        if isinstance(elem, etree._Entity):
            raise UnsafeXML("entity references are refused", reason="entity-forbidden")
    depth = _depth(root)
    if depth > MAX_DEPTH:
        raise UnsafeXML(f"element nesting depth {depth} exceeds {MAX_DEPTH}", reason="too-deep")
    return root


def _depth(root: etree._Element) -> int:
    deepest = 0
    stack = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in elem)
    return deepest
