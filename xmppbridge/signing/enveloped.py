"""Check an enveloped whole-document signature of the one shape our signer writes, without signxml's copies.

signxml's ``XMLVerifier.verify`` serialises and re-parses the whole document three times (to keep the
caller's tree and the c14n input independent of each other and of parent namespaces) before it
canonicalises it once; at 500 KB that is most of the time a verification takes. This module performs the
same steps, in the same order and with the same exceptions, for the one shape the bridge produces and
libxmlsec1 templates use:

* ``SignedInfo`` canonicalised with exclusive C14N (no InclusiveNamespaces);
* one ``Reference URI=""`` with exactly the transforms enveloped-signature, exclusive C14N;
* ``KeyInfo`` holding only ``X509Data`` with ``X509Certificate`` elements (no KeyValue to compare);
* the document element alone in its document (no top-level comments or PIs), so that it needs no copy
  to be canonicalised on its own.

It is only called after ``shape.signature_layout`` accepted the document and ``trust.resolve`` the
signer; anything else (``handles`` says False) goes to signxml as before. Equivalence with signxml,
accepted and rejected alike, is tested in tests/test_verify_equivalence.py.

signxml also copies the signature by serialising and re-parsing it; here it is a deepcopy, and the one
difference that makes is reproduced: text after the signature other than blanks fails that re-parse.

The enveloped transform removes the signature from the tree for the time of the canonicalisation and
puts it back afterwards, instead of working on a copy; the caller owns the tree (``verify_document``
parsed it) and reads it again only through equivalent canonical forms.
"""

from __future__ import annotations

import datetime
from base64 import b64decode
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy

import cryptography.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree
from signxml import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, XMLVerifier
from signxml.algorithms import DigestAlgorithm, SignatureMethod, digest_algorithm_implementations

from xmppbridge.signing.dsig import (
    ALLOWED_DIGESTS,
    ALLOWED_SIGNATURE_METHODS,
    DS_NS,
    ENVELOPED,
    EXC_C14N,
    child,
    children,
)

_DS = f"{{{DS_NS}}}"  # Clark notation: cheaper for lxml's find than a prefix mapping
_X509_DATA = _DS + "X509Data"
_X509_CERTIFICATE = _DS + "X509Certificate"
_REFERENCE_TRANSFORMS = [ENVELOPED, EXC_C14N]


def _parser() -> etree.XMLParser:
    # signxml's parser for its copies and for the canonical forms it returns.
    return etree.XMLParser(resolve_entities=False)


def handles(doc: etree._Element, signature: etree._Element) -> bool:
    """True when ``signature`` (an element of ``doc``) has the shape this module verifies."""
    if doc.getparent() is not None or doc.getprevious() is not None or doc.getnext() is not None:
        return False
    signed_info = child(signature, _DS + "SignedInfo")
    if signed_info is None:
        return False
    method = child(signed_info, _DS + "CanonicalizationMethod")
    if method is None or method.get("Algorithm") != EXC_C14N or len(method):
        return False
    references = children(signed_info, _DS + "Reference")
    if len(references) != 1 or references[0].get("URI") != "" or not _plain_transforms(references[0]):
        return False
    key_info = children(signature, _DS + "KeyInfo")
    if len(key_info) != 1:
        return False
    # Comments anywhere in KeyInfo have a callable tag and fail these comparisons too: signxml's business.
    return all(
        data.tag == _X509_DATA and all(cert.tag == _X509_CERTIFICATE for cert in data) for data in key_info[0]
    )


def verify(doc: etree._Element, signature: etree._Element, certificate: x509.Certificate,
           when: datetime.datetime) -> etree._Element | None:
    """What signxml's ``verify(...).signed_xml`` returns for this signature (the canonical form of the
    signed document, parsed), or signxml's exception for a signature that does not verify."""
    # signxml checks a copy made by serialising the signature, tail included, and parsing that: a tail
    # other than spaces, tabs and newlines (a serialised CR is a character reference) makes it fail.
    if signature.tail and signature.tail.strip(" \t\n"):
        raise ValueError("Extra content at the end of the document (text after the signature)")
    copy = deepcopy(signature)  # the same tree for exclusive C14N and the schema, without the round trip
    for schema in XMLVerifier.schemas():
        schema.assertValid(copy)  # etree.DocumentInvalid, as signxml raises it
    signed_info = _find(copy, "SignedInfo")
    signature_alg = SignatureMethod(_find(signed_info, "SignatureMethod").get("Algorithm"))
    if signature_alg.value not in ALLOWED_SIGNATURE_METHODS:  # shape.py refused it already; keep the guard
        raise InvalidInput(f"Signature method {signature_alg.name} forbidden by configuration")
    raw_signature = b64decode(_find(copy, "SignatureValue").text)  # type: ignore[arg-type]
    signed_info_c14n = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    _check_validity(certificate, when)
    try:
        _verify_value(certificate, signature_alg, raw_signature, signed_info_c14n)
    except cryptography.exceptions.InvalidSignature as exc:
        raise InvalidSignature(f"Signature verification failed: {exc}") from exc

    # See what is signed: the reference is read from the SignedInfo whose signature just verified.
    verified = etree.fromstring(signed_info_c14n, _parser())
    references = children(verified, _DS + "Reference")
    if len(references) != 1 or references[0].get("URI") != "" or not _plain_transforms(references[0]):
        raise InvalidSignature("the verified SignedInfo differs from the one checked before")
    reference = references[0]
    digest_alg = DigestAlgorithm(_find(reference, "DigestMethod").get("Algorithm"))
    if digest_alg.value not in ALLOWED_DIGESTS:
        raise InvalidInput(f"Digest algorithm {digest_alg.name} forbidden by configuration")
    digest_value = _find(reference, "DigestValue")
    with _enveloped(signature):
        payload_c14n = etree.tostring(doc, method="c14n", exclusive=True, with_comments=False)
    digest = hashes.Hash(digest_algorithm_implementations[digest_alg]())
    digest.update(payload_c14n)
    if b64decode(digest_value.text) != digest.finalize():  # type: ignore[arg-type]
        raise InvalidDigest("Digest mismatch for reference 0 ()")
    try:
        return etree.fromstring(payload_c14n, _parser())
    except etree.XMLSyntaxError:
        return None


def _plain_transforms(reference: etree._Element) -> bool:
    transforms = [transform for holder in children(reference, _DS + "Transforms")
                  for transform in children(holder, _DS + "Transform")]
    return [t.get("Algorithm") for t in transforms] == _REFERENCE_TRANSFORMS and not any(map(len, transforms))


def _find(element: etree._Element, name: str) -> etree._Element:
    found = child(element, _DS + name)
    if found is None:
        raise InvalidInput(f"Expected to find XML element {name} in {element.tag}")
    return found


def _check_validity(certificate: x509.Certificate, when: datetime.datetime) -> None:
    if when < certificate.not_valid_before_utc:
        raise InvalidCertificate(f"certificate is not yet valid at validation time {when.isoformat()}")
    if when > certificate.not_valid_after_utc:
        raise InvalidCertificate(f"certificate has expired at validation time {when.isoformat()}")


def _verify_value(certificate: x509.Certificate, signature_alg: SignatureMethod, raw_signature: bytes,
                  data: bytes) -> None:
    key = certificate.public_key()
    hash_alg = digest_algorithm_implementations[signature_alg]()
    if signature_alg.name.startswith("ECDSA_"):
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidInput("DER encoded key value does not match specified signature algorithm")
        size = (key.key_size + 7) // 8
        if len(raw_signature) != 2 * size:
            raise InvalidSignature(f"Expected {2 * size} byte SignatureValue, got {len(raw_signature)}")
        r = int.from_bytes(raw_signature[:size], "big")
        s = int.from_bytes(raw_signature[size:], "big")
        key.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(hash_alg))
    elif signature_alg.name.startswith("RSA_"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidInput("DER encoded key value does not match specified signature algorithm")
        key.verify(raw_signature, data, padding.PKCS1v15(), hash_alg)
    else:
        raise InvalidInput(f"Unsupported signature algorithm {signature_alg}")


@contextmanager
def _enveloped(signature: etree._Element) -> Iterator[None]:
    """The tree without ``signature`` while in the block, its tail kept in place as signxml's
    ``_remove_sig`` keeps it; everything put back as it was afterwards."""
    parent = signature.getparent()
    assert parent is not None  # shape.signature_layout: it sits in an AdditionalData
    index = parent.index(signature)
    previous = signature.getprevious()
    tail = signature.tail
    saved = parent.text if previous is None else previous.tail
    parent.remove(signature)  # lxml takes the tail along
    if tail is not None:
        if previous is None:
            parent.text = (saved or "") + tail
        else:
            previous.tail = (saved or "") + tail
    try:
        yield
    finally:
        if previous is None:
            parent.text = saved
        else:
            previous.tail = saved
        parent.insert(index, signature)
