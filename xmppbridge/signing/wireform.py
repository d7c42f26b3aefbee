"""The wire form: one serialisation of an XML tree that survives XMPP servers and libraries unchanged.

XMPP keeps the namespace-aware infoset of a payload but not its prefixes: Prosody re-serialises every
element in default-namespace form and every namespaced attribute as ``nsN:name`` (util/stanza.lua),
and slixmpp parses into ElementTree, which forgets prefixes altogether. Exclusive C14N still renders
prefixes, so a signature over ``<ds:Signature>`` or ``xsi:schemaLocation`` breaks in transit.

The bridge therefore signs and verifies the *wire form* of a document, which either end can derive
from the namespace-aware tree alone:

* elements carry no prefix; ``xmlns="..."`` is declared where the namespace changes;
* ``xml:`` attributes keep their prefix; other namespaced attributes get ``n1``, ``n2``, ... declared on
  their own element, numbered by sorted namespace URI;
* whitespace-only text between elements (indentation) is dropped; comments and processing instructions
  are dropped; all other text is kept exactly.

The function accepts lxml and xml.etree elements alike (both expose ``tag``, ``attrib``, ``text``,
``tail`` and iteration).
"""

from __future__ import annotations

from typing import Any

XML_NS = "http://www.w3.org/XML/1998/namespace"

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)


def _split(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
        return ns, local
    return "", name


def _is_element(node: Any) -> bool:
    # lxml comments and processing instructions have a callable tag; ElementTree drops them on parse.
    return isinstance(node.tag, str)


def _write(elem: Any, parent_ns: str | None, out: list[str]) -> None:
    ns, local = _split(elem.tag)
    out.append("<" + local)
    if ns != parent_ns:
        out.append(f' xmlns="{ns.translate(_ATTR_ESCAPES)}"')

    plain: list[tuple[str, str]] = []
    namespaced: dict[str, list[tuple[str, str]]] = {}
    for name, value in elem.attrib.items():
        attr_ns, attr_local = _split(name)
        if not attr_ns:
            plain.append((attr_local, value))
        elif attr_ns == XML_NS:
            plain.append(("xml:" + attr_local, value))
        else:
            namespaced.setdefault(attr_ns, []).append((attr_local, value))
    for index, attr_ns in enumerate(sorted(namespaced), start=1):
        out.append(f' xmlns:n{index}="{attr_ns.translate(_ATTR_ESCAPES)}"')
        plain.extend((f"n{index}:{attr_local}", value) for attr_local, value in namespaced[attr_ns])
    for name, value in sorted(plain):
        out.append(f' {name}="{value.translate(_ATTR_ESCAPES)}"')

    children = [child for child in elem if _is_element(child)]
    if not children and not elem.text:
        out.append("/>")
        return
    out.append(">")
    if elem.text and (not children or elem.text.strip()):
        out.append(elem.text.translate(_TEXT_ESCAPES))
    for child in elem:
        if _is_element(child):
            _write(child, ns, out)
        # A comment's tail is text of the parent, like any child's tail.
        if child.tail and (child.tail.strip() or not children):
            out.append(child.tail.translate(_TEXT_ESCAPES))
    out.append(f"</{local}>")


def wire_bytes(elem: Any) -> bytes:
    """The wire form of ``elem`` and its subtree, as UTF-8 without an XML declaration."""
    out: list[str] = []
    _write(elem, None, out)
    return "".join(out).encode("utf-8")
