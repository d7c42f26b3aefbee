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

This is a contract between deployed bridges: the output must stay byte for byte what it was
(tests/test_wireform_equivalence.py holds the original writer and compares). The writer below is the
same algorithm written for speed, since every signature of a document runs it: the split and escaped
form of each tag is computed once per call, escaping is skipped for strings that need none, leaves are
written inline, and "has element children" is answered by ``len()`` when the tree holds nothing but
elements (always true of a tree parsed from a wire form or by ElementTree, and of most documents).
"""

from __future__ import annotations

import functools
from typing import Any

from lxml import etree

XML_NS = "http://www.w3.org/XML/1998/namespace"

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)

# A tag's pieces: its namespace, the start tag's opening inside its parent's namespace, the same with
# the namespace declared, and the end tag.
_TagForm = tuple[str, str, str, str]


def _split(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
        return ns, local
    return "", name


@functools.lru_cache(maxsize=4096)  # bounded: hostile documents may bring any number of names
def _tag_form(tag: str) -> _TagForm:
    ns, local = _split(tag)
    return ns, "<" + local, f'<{local} xmlns="{_attr(ns)}"', f"</{local}>"


def _text(value: str) -> str:
    # Four substring tests are cheaper than translate() on the short strings documents are made of.
    if "&" in value or "<" in value or ">" in value or "\r" in value:
        return value.translate(_TEXT_ESCAPES)
    return value


def _attr(value: str) -> str:
    if ("&" in value or "<" in value or '"' in value or "\t" in value or "\n" in value
            or "\r" in value):
        return value.translate(_ATTR_ESCAPES)
    return value


def _elements_only(elem: Any) -> bool:
    """True when the tree holds elements only (no comment, PI or entity reference), so that ``len()``
    counts element children. lxml answers inside libxml2; ElementTree (what slixmpp hands over) is walked:
    its parser drops comments, but trees built by code may hold Comment/PI nodes."""
    if isinstance(elem, etree._Element):
        for _node in elem.iter(etree.Comment, etree.ProcessingInstruction, etree.Entity):
            return False
        return True
    return all(isinstance(node.tag, str) for node in elem.iter())


def wire_text(elem: Any, parent_ns: str | None = None) -> str:
    """The wire form of ``elem`` as a ``str``, written as if inside an element of namespace
    ``parent_ns`` (None: the top of the output, so the element's namespace is always declared)."""
    out: list[str] = []
    append = out.append
    tags: dict[str, _TagForm] = {}  # this call's, in front of the shared (bounded) cache

    def form_of(tag: str) -> _TagForm:
        form = tags[tag] = _tag_form(tag)
        return form

    def attributes(items: list[tuple[str, str]]) -> None:
        if len(items) == 1 and not items[0][0].startswith("{"):  # the usual case, e.g. category="..."
            append(f' {items[0][0]}="{_attr(items[0][1])}"')
            return
        if any(name.startswith("{") for name, _ in items):
            items = _renamed_attributes(items, append)
        # Sorting (name, value) pairs as the original writer did: names are unique in lxml, and an
        # ElementTree attrib is a dict, so this orders by name.
        items.sort()
        for name, value in items:
            append(f' {name}="{_attr(value)}"')

    def write(elem: Any, parent_ns: str | None) -> None:
        tag = elem.tag
        ns, same, declared, close = tags.get(tag) or form_of(tag)
        append(same if ns == parent_ns else declared)
        items = elem.items()
        if items:
            attributes(items)
        text = elem.text
        if not len(elem):
            append(f">{_text(text)}{close}" if text else "/>")
            return
        append(">")
        # str.isspace() and str.strip() share one definition of whitespace (Py_UNICODE_ISSPACE).
        if text and not text.isspace():
            append(_text(text))
        for child in elem:
            if len(child):
                write(child, ns)
            else:
                # Most elements are leaves: written here rather than by a call (the hot path).
                tag = child.tag
                child_ns, same, declared, child_close = tags.get(tag) or form_of(tag)
                items = child.items()
                if items:
                    append(same if child_ns == ns else declared)
                    attributes(items)
                    same = declared = ""
                text = child.text
                if text:
                    if "&" in text or "<" in text or ">" in text or "\r" in text:
                        text = text.translate(_TEXT_ESCAPES)
                    append(f"{same if child_ns == ns else declared}>{text}{child_close}")
                else:
                    append(f"{same if child_ns == ns else declared}/>")
            tail = child.tail
            if tail and not tail.isspace():
                append(_text(tail))
        append(close)

    def write_general(elem: Any, parent_ns: str | None) -> None:
        # Comments, processing instructions and entity references are dropped, but their tails are
        # text of the parent, and they do not count as children.
        tag = elem.tag
        ns, same, declared, close = tags.get(tag) or form_of(tag)
        append(same if ns == parent_ns else declared)
        items = list(elem.attrib.items())
        if items:
            attributes(items)
        text = elem.text
        children = [child for child in elem if isinstance(child.tag, str)]
        if not children and not text:
            append("/>")
            return
        append(">")
        if text and (not children or not text.isspace()):
            append(_text(text))
        for child in elem:
            if isinstance(child.tag, str):
                write_general(child, ns)
            tail = child.tail
            if tail and (not children or not tail.isspace()):
                append(_text(tail))
        append(close)

    (write if _elements_only(elem) else write_general)(elem, parent_ns)
    return "".join(out)


def _renamed_attributes(items: list[tuple[str, str]], append: Any) -> list[tuple[str, str]]:
    """``xml:`` keeps its prefix; other namespaces become n1, n2, ... by sorted URI, declared here."""
    plain: list[tuple[str, str]] = []
    namespaced: dict[str, list[tuple[str, str]]] = {}
    for name, value in items:
        attr_ns, attr_local = _split(name)
        if not attr_ns:
            plain.append((attr_local, value))
        elif attr_ns == XML_NS:
            plain.append(("xml:" + attr_local, value))
        else:
            namespaced.setdefault(attr_ns, []).append((attr_local, value))
    for index, attr_ns in enumerate(sorted(namespaced), start=1):
        append(f' xmlns:n{index}="{_attr(attr_ns)}"')
        plain.extend((f"n{index}:{attr_local}", value) for attr_local, value in namespaced[attr_ns])
    return plain


def wire_bytes(elem: Any) -> bytes:
    """The wire form of ``elem`` and its subtree, as UTF-8 without an XML declaration."""
    return wire_text(elem).encode("utf-8")
