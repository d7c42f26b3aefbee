"""XML-DSig names and the algorithm policy shared by the signer and the verifier."""

from __future__ import annotations

from lxml import etree

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
DS_SIGNATURE = f"{{{DS_NS}}}Signature"

# Exclusive C14N: RID (RFC 6545 §9.1) requires it, and unlike inclusive C14N / C14N 1.1 it does not
# digest the namespace declarations of the pubsub <item>/<message> around the document (W3C Exclusive
# XML Canonicalization 1.0, §1).
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

C14N_METHODS = frozenset(
    {
        EXC_C14N,
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
        "http://www.w3.org/2006/12/xml-c14n11",
        "http://www.w3.org/2006/12/xml-c14n11#WithComments",
    }
)
# Only what an enveloped, whole-document signature needs. signxml silently skips transforms it does not
# know (XPath, XSLT, ...), so anything else is refused up front instead of half-applied.
ALLOWED_TRANSFORMS = C14N_METHODS | {ENVELOPED}

ALLOWED_SIGNATURE_METHODS = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    }
)
ALLOWED_DIGESTS = frozenset(
    {
        SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)
# Broken hash functions; RFC 6545 §9.1 and RFC 6931 say SHA-1 SHOULD NOT be used.
_WEAK_MARKERS = ("sha1", "md5", "ripemd")


def is_weak(algorithm: str) -> bool:
    """True for algorithm URIs built on a broken hash (SHA-1, MD5, RIPEMD)."""
    fragment = algorithm.rpartition("#")[2].lower()
    return any(marker in fragment for marker in _WEAK_MARKERS)


def child(element: etree._Element, tag: str) -> etree._Element | None:
    """The first child of ``element`` with ``tag`` (Clark notation): ``element.find(tag)`` without
    lxml's path machinery, which costs more than the lookup on the verifier's hot path."""
    return next(element.iterchildren(tag), None)


def children(element: etree._Element, tag: str) -> list[etree._Element]:
    """The children of ``element`` with ``tag``: ``element.findall(tag)``, see ``child``."""
    return list(element.iterchildren(tag))
