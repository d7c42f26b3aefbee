"""The wire form is a contract between deployed bridges: the fast writer must give exactly the bytes of the
original one (kept below as the reference) for any tree, lxml or ElementTree, and the wire form of a
tree parsed from a wire form must be that wire form again (signing splices the signature into it)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bench.common import large_document
from tests.hostile_corpus import build_corpus, build_world
from xmppbridge.signing.wireform import wire_bytes, wire_text

REPO = Path(__file__).resolve().parents[1]
XML_NS = "http://www.w3.org/XML/1998/namespace"

# --- the reference: the original writer, verbatim -------------------------------------------------------

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
        if child.tail and (child.tail.strip() or not children):
            out.append(child.tail.translate(_TEXT_ESCAPES))
    out.append(f"</{local}>")


def reference_wire_bytes(elem: Any) -> bytes:
    out: list[str] = []
    _write(elem, None, out)
    return "".join(out).encode("utf-8")


# --- checks ------------------------------------------------------------------------------------------------


def assert_same(elem: Any) -> None:
    expected = reference_wire_bytes(elem)
    assert wire_bytes(elem) == expected
    # Idempotence, which sign.py relies on to splice the signature into the wire form it wrote.
    assert wire_bytes(etree.fromstring(expected)) == expected
    assert wire_bytes(ET.fromstring(expected)) == expected


def _documents() -> list[tuple[str, bytes]]:
    files = sorted({*REPO.glob("tests/data/**/*.xml"), *REPO.glob("config/samples/*.xml"),
                    *REPO.glob("examples/**/*.xml")})
    found = [(str(path.relative_to(REPO)), path.read_bytes()) for path in files]
    found.append(("bench large document", large_document(60_000)))
    world = build_world()
    for case in build_corpus(world):
        if case.payload is not None and case.over_xmpp:
            found.append((f"hostile:{case.name}", case.payload))
    return found


DOCUMENTS = _documents()


@pytest.mark.parametrize("name, data", DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_documents_give_the_reference_bytes(name: str, data: bytes) -> None:
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, strip_cdata=False))
    except etree.XMLSyntaxError:
        pytest.skip("not well-formed (a parsing case of the hostile corpus)")
    for elem in root.iter(etree.Element):  # every subtree too: wire_bytes gets items' payloads
        assert_same(elem)
    assert_same(ET.fromstring(etree.tostring(root, encoding="utf-8")))


def test_subtree_written_inside_its_parent_namespace() -> None:
    root = etree.fromstring(b'<a xmlns="urn:a"><b xmlns="urn:b"><c/></b><d/></a>')
    out: list[str] = []
    _write(root[0], "urn:a", out)
    assert wire_text(root[0], "urn:a") == "".join(out)
    out = []
    _write(root[1], "urn:a", out)
    assert wire_text(root[1], "urn:a") == "".join(out) == "<d/>"


def test_corner_cases_of_the_contract() -> None:
    corners = [
        # whitespace-only text kept in a leaf, dropped between elements; Unicode whitespace counts
        b'<a xmlns="urn:x"> <b>  </b>\xc2\xa0<c>\xe2\x80\x83</c>\r\n</a>',
        # comments and PIs: dropped, their tails kept as text of the parent
        b"<a>x<!--c--> <b/><?p q?>y<!--d--> </a>",
        b"<a> <!--c--> </a>",
        b"<a><!--only a comment--></a>",
        # mixed content, escapes in text and attributes, ">" raw in attributes
        b'<a t="&lt;&amp;&quot;&gt;&#9;&#10;&#13;\'">1 &lt; 2 &amp;&amp; 3 &gt; 2&#13;<b/>tail &#13;</a>',
        # namespaced attributes: n1, n2, ... by sorted URI (n10 sorts before n2 as a name)
        b'<a xmlns:p="urn:p" xmlns:q="urn:a" xmlns:x="urn:z" p:b="1" q:a="2" x:c="3" xml:lang="en" z="4"/>',
        b"<r " + b" ".join(b'xmlns:p%d="urn:%02d" p%d:a="%d"' % (i, i, i, i) for i in range(12)) + b"/>",
        # undeclared default namespace below a namespaced element; prefixed elements
        b'<p:a xmlns:p="urn:p"><b xmlns=""><p:c/></b><p:d xmlns:p="urn:other"/></p:a>',
        # non-ASCII names and content; CDATA
        "<é xmlns='urn:u' ä='ö'>日本<![CDATA[ <x> & ]]>語</é>".encode(),
        b"<a><![CDATA[ ]]><b/><![CDATA[x]]> </a>",
        b"<a><b/>" + b"<c/>" * 3 + b"</a>",
    ]
    for data in corners:
        root = etree.fromstring(data, etree.XMLParser(strip_cdata=False))
        for elem in root.iter():
            if isinstance(elem.tag, str):
                assert_same(elem)
        assert_same(ET.fromstring(data))


def test_trees_built_in_code() -> None:
    root = etree.Element("{urn:x}a")
    root.text = ""  # an empty text is no text
    child = etree.SubElement(root, "b")
    child.text = etree.CDATA(" ")
    child.tail = " "
    etree.SubElement(root, "{urn:x}c").append(etree.Comment("c"))
    root[-1][-1].tail = " \t"
    root.append(etree.ProcessingInstruction("pi", "x"))
    root[-1].tail = "\xa0z"
    assert_same(root)
    et_root = ET.Element("a", {"{urn:q}b": "1", "c": ">"})
    ET.SubElement(et_root, "d").text = ""
    et_root.append(ET.Comment("c"))
    et_root[-1].tail = "t"
    assert_same(et_root)


# --- generated trees --------------------------------------------------------------------------------------

# Characters that matter to the writer: escapes, XML and Unicode whitespace (str.isspace but also
# valid in XML), quotes, non-ASCII.
_INTERESTING = list("&<>\"'\r\n\t ab=:{}/") + ["\x85", "\xa0", "\u2003", "\u3000", "\u2028", "é", "日", "😀"]
_TEXT = st.one_of(
    st.none(),
    st.just(""),
    st.text(st.sampled_from([" ", "\n", "\t", "\r", "\xa0", "\u2003"]), min_size=1, max_size=4),
    st.text(st.sampled_from(_INTERESTING), max_size=8),
)
_NAMES = st.sampled_from(["a", "b", "c", "Incident", "é", "n1", "xml-ish", "Z"])
_NAMESPACES = st.sampled_from(["", "urn:a", "urn:b", "http://www.w3.org/2000/09/xmldsig#",
                               "urn:%C3%BC", "urn:x?a=1;b=2"])
_ATTRIBUTE_NS = st.sampled_from(["", "", "", XML_NS, "urn:a", "urn:p", "urn:q", "http://x/y#z"])
_ATTR_VALUE = st.text(st.sampled_from(_INTERESTING), max_size=6)


@st.composite
def _spec(draw: st.DrawFn, depth: int = 0) -> tuple[Any, ...]:
    """An element as data: (tag, attributes, text, children); children are specs, "comment" or "pi"."""
    ns = draw(_NAMESPACES)
    tag = f"{{{ns}}}{draw(_NAMES)}" if ns else draw(_NAMES)
    attributes = {
        (f"{{{attr_ns}}}{name}" if attr_ns else name): value
        for attr_ns, name, value in draw(st.lists(st.tuples(_ATTRIBUTE_NS, _NAMES, _ATTR_VALUE), max_size=4))
    }
    children: list[tuple[Any, str | None]] = []
    if depth < 3:
        for kind in draw(st.lists(st.sampled_from(["element", "element", "comment", "pi"]), max_size=4)):
            child = draw(_spec(depth + 1)) if kind == "element" else kind
            children.append((child, draw(_TEXT)))
    return tag, attributes, draw(_TEXT), children


def _build(spec: tuple[Any, ...], parent: etree._Element | None = None) -> etree._Element:
    # Built in one document with SubElement: lxml mangles attribute namespaces of subtrees moved
    # between documents, which is not what this test is about.
    tag, attributes, text, children = spec
    elem = etree.Element(tag) if parent is None else etree.SubElement(parent, tag)
    for name, value in attributes.items():
        elem.set(name, value)
    elem.text = text
    for child, tail in children:
        if child == "comment":
            node = etree.Comment("c")
            elem.append(node)
        elif child == "pi":
            node = etree.ProcessingInstruction("pi", "x")
            elem.append(node)
        else:
            node = _build(child, elem)
        node.tail = tail
    return elem


def trees() -> st.SearchStrategy[etree._Element]:
    return _spec().map(_build)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_generated_trees_give_the_reference_bytes(root: etree._Element) -> None:
    for elem in root.iter():
        if isinstance(elem.tag, str):
            assert_same(elem)
    # The same infoset as ElementTree sees it (comments and PIs gone by parsing).
    assert_same(ET.fromstring(etree.tostring(root, encoding="utf-8")))


@settings(max_examples=200, deadline=None)
@given(trees())
def test_generated_trees_without_comments_give_the_reference_bytes(root: etree._Element) -> None:
    # The fast path (a tree of elements only): same trees with comments and PIs stripped.
    etree.strip_tags(root, etree.Comment, etree.ProcessingInstruction)
    assert_same(root)
