"""The wire form must be derivable from the namespace-aware tree alone, whoever serialised it last."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lxml import etree

from xmppbridge.signing.wireform import wire_bytes

DOC = b"""<?xml version="1.0"?>
<!-- a comment outside -->
<iodef:IODEF-Document xmlns:iodef="urn:ietf:params:xml:ns:iodef-2.0" version="2.00" xml:lang="en"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:x x.xsd">
  <iodef:Incident purpose="watch" restriction="amber"><!-- inner -->
    <iodef:IncidentID name="csirt.example.org">A&amp;B &lt;1&gt; "q"</iodef:IncidentID>
    <iodef:Description>two
lines	tab</iodef:Description>
    <iodef:AdditionalData dtype="xml" meaning="signature">
      <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo a="x&#10;y"/></ds:Signature>
    </iodef:AdditionalData>
  </iodef:Incident>
</iodef:IODEF-Document>"""

# The same infoset as Prosody would forward it: default namespaces, attributes renamed to ns1.
PROSODY_STYLE = b"""<IODEF-Document xmlns="urn:ietf:params:xml:ns:iodef-2.0" xml:lang="en" version="2.00"
 xmlns:ns1="http://www.w3.org/2001/XMLSchema-instance" ns1:schemaLocation="urn:x x.xsd"><Incident
 restriction="amber" purpose="watch"><IncidentID name="csirt.example.org">A&amp;B &lt;1&gt; "q"</IncidentID
 ><Description>two
lines	tab</Description><AdditionalData meaning="signature" dtype="xml"><Signature
 xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo a="x&#10;y"/></Signature></AdditionalData
 ></Incident></IODEF-Document>"""


def test_lxml_and_elementtree_give_the_same_bytes() -> None:
    assert wire_bytes(etree.fromstring(DOC)) == wire_bytes(ET.fromstring(DOC))


def test_prefixes_chosen_by_a_server_do_not_matter() -> None:
    assert wire_bytes(ET.fromstring(PROSODY_STYLE)) == wire_bytes(etree.fromstring(DOC))


def test_wire_form_is_a_fixed_point() -> None:
    once = wire_bytes(etree.fromstring(DOC))
    assert wire_bytes(etree.fromstring(once)) == once
    assert wire_bytes(ET.fromstring(once)) == once


def test_content_is_kept_and_indentation_dropped() -> None:
    once = wire_bytes(etree.fromstring(DOC))
    root = etree.fromstring(once)
    ns = {"i": "urn:ietf:params:xml:ns:iodef-2.0", "ds": "http://www.w3.org/2000/09/xmldsig#"}
    assert root.findtext("i:Incident/i:IncidentID", namespaces=ns) == 'A&B <1> "q"'
    assert root.findtext("i:Incident/i:Description", namespaces=ns) == "two\nlines\ttab"
    assert root.find(".//ds:SignedInfo", ns).get("a") == "x\ny"
    assert root.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation") == "urn:x x.xsd"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert b"comment" not in once and b"inner" not in once
    assert b"\n  <" not in once
