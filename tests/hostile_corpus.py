"""The hostile-input corpus: every way a peer (or a file) may abuse the receive path, each with the one
specific reason it must be refused for.

``build_world`` makes the keys: member A (pinned, speaks for a.test), a consortium CA with a CRL, and the
odd signers the trust cases need. ``build_corpus`` makes the cases from A's identity (and, for the trust
cases, the world's), so the same corpus runs in-process and, for the cases XMPP can carry and that need
only A's pinned certificate at the receiver, through the real federation.
"""

from __future__ import annotations

import copy
import datetime
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import SignatureConstructionMethod

from tests.pki import DAY, NOW, Authority, issue, make_ca, make_crl
from xmppbridge.iodef.model import NS_V1, NS_V2
from xmppbridge.signing.keys import SigningIdentity, self_signed_certificate
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import SignerRef, SourceRule, TrustStore
from xmppbridge.signing.wireform import wire_bytes
from xmppbridge.store.items import ItemRef

DS = "http://www.w3.org/2000/09/xmldsig#"
SERVICE = "pubsub.a.test"
NODE = "iodef/need-to-know/mitigation"
STRICT_SERVICE = "pubsub.strict.test"  # a subscription that accepts only one named signer
MAX_BYTES = 400_000
SHA1_DIGEST = "http://www.w3.org/2000/09/xmldsig#sha1"


def iodef2(incident_id: str, *, name: str = "csirt.a.test", restriction: str = "need-to-know",
           purpose: str = "mitigation", description: str = "Botnet C2 seen at 192.0.2.10",
           contact: bool = True) -> bytes:
    contact_xml = ('<Contact role="creator" type="organization"><Email><EmailTo>csirt@a.test</EmailTo>'
                   "</Email></Contact>") if contact else ""
    return (f'<IODEF-Document version="2.00" xml:lang="en" xmlns="{NS_V2}">'
            f'<Incident purpose="{purpose}" restriction="{restriction}">'
            f'<IncidentID name="{name}">{incident_id}</IncidentID>'
            "<GenerationTime>2026-11-20T08:30:00Z</GenerationTime>"
            f"<Description>{description}</Description>{contact_xml}</Incident></IODEF-Document>").encode()


def ec_identity(common_name: str, *, domains: tuple[str, ...] = (),
                not_before: datetime.datetime | None = None, days: int = 365) -> SigningIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed_certificate(key, common_name, domains=domains, not_before=not_before, days=days)
    return SigningIdentity.from_objects(key, certificate)


@dataclass(frozen=True)
class World:
    a: SigningIdentity  # pinned at the receiver, speaks for a.test
    ca: Authority
    signers: dict[str, SigningIdentity] = field(default_factory=dict)  # the odd ones, by case name
    trust: TrustStore = field(default=None)  # type: ignore[assignment]


def build_world(a: SigningIdentity | None = None) -> World:
    a = a or ec_identity("CSIRT A", domains=("a.test",))
    ca = make_ca("Hostile Test Root CA")
    other_ca = make_ca("Unknown CA")
    signers = {
        "expired-pinned": ec_identity("Expired", domains=("a.test",), not_before=NOW - 60 * DAY, days=30),
        "not-yet-valid-pinned": ec_identity("Future", domains=("a.test",), not_before=NOW + DAY),
        "retired-anchor": ec_identity("Retired", domains=("a.test",)),
        "unknown-signer": ec_identity("Mallory", domains=("a.test",)),
        "ca-member": issue(ca, "CSIRT C", domains=("c.test",)),
        "ca-expired": issue(ca, "CSIRT Expired", not_before=NOW - 60 * DAY, days=30),
        "ca-revoked": issue(ca, "CSIRT Revoked"),
        "ca-sha1-certificate": issue(ca, "CSIRT SHA-1", sha1=True),
        "ca-wrong-key-usage": issue(ca, "CSIRT Encipher Only", usage="encipher"),
        "ca-weak-key": issue(ca, "CSIRT Short Key", key=rsa.generate_private_key(65537, 1024)),
        "ca-untrusted-issuer": issue(other_ca, "CSIRT Elsewhere"),
    }
    pinned = {s.fingerprint: s.certificate for s in
              (a, signers["expired-pinned"], signers["not-yet-valid-pinned"], signers["retired-anchor"])}
    trust = TrustStore(
        certificates=MappingProxyType(pinned),
        retire_at=MappingProxyType({signers["retired-anchor"].fingerprint: NOW - DAY}),
        authorities=(ca.certificate,),
        crls=(make_crl(ca, [signers["ca-revoked"].certificate]),),
        sources=MappingProxyType({STRICT_SERVICE: SourceRule(signers=(SignerRef.parse("CN=Someone Else"),))}),
    )
    return World(a=a, ca=ca, signers=signers, trust=trust)


@dataclass(frozen=True)
class Case:
    name: str
    payload: bytes | None
    reason: str
    over_xmpp: bool = True  # well-formed, no DOCTYPE: an XMPP server can carry it
    pinned_only: bool = True  # needs nothing at the receiver but A's pinned certificate
    service: str = SERVICE
    node: str = NODE

    @property
    def wire(self) -> bytes:
        """What a receiver gets after XMPP: the namespace-aware tree, re-serialised."""
        assert self.payload is not None and self.over_xmpp
        return wire_bytes(etree.fromstring(self.payload))


# --- building blocks ---------------------------------------------------------------------------------------


def _tree(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def _mutated(data: bytes, change: Callable[[etree._Element], object]) -> bytes:
    root = _tree(data)
    change(root)
    return etree.tostring(root)


def _signature(root: etree._Element) -> etree._Element:
    return next(root.iter(f"{{{DS}}}Signature"))


class _PermissiveSigner(XMLSigner):
    """signxml refuses SHA-1 outright; an attacker (or an old implementation) does not."""

    def check_deprecated_methods(self) -> None:
        pass


def _sign_with(data: bytes, identity: SigningIdentity, *, method: str, digest: str,
               reference_uri: str | None = None) -> bytes:
    """A genuine signature by ``identity`` with any algorithms / reference, in the usual place."""
    root = _tree(data)
    holder = etree.SubElement(root, f"{{{NS_V2}}}AdditionalData", dtype="xml", meaning="signature")
    etree.SubElement(holder, f"{{{DS}}}Signature", Id="placeholder", nsmap={None: DS})
    signer = _PermissiveSigner(method=SignatureConstructionMethod.enveloped, signature_algorithm=method,
                               digest_algorithm=digest, c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    signer.namespaces = {None: DS}
    signed = signer.sign(root, key=identity.private_key, cert=[identity.certificate],
                         reference_uri=reference_uri)
    return wire_bytes(_tree(etree.tostring(signed)))


def _laughs(levels: int = 9) -> bytes:
    entities = ['<!ENTITY l0 "ha">'] + [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, levels)]
    doctype = f'<!DOCTYPE IODEF-Document [{"".join(entities)}]>'
    return f"{doctype}<IODEF-Document>&l{levels - 1};</IODEF-Document>".encode()


# --- the corpus --------------------------------------------------------------------------------------------


def build_corpus(world: World) -> list[Case]:
    a, signers = world.a, world.signers

    def signed(incident_id: str, **kwargs: object) -> bytes:
        return sign_document(_tree(iodef2(incident_id, **kwargs)), a)  # type: ignore[arg-type]

    good = signed("H-GOOD")
    cases = [
        *_parsing_cases(good),
        *_wrapping_cases(good, a),
        *_algorithm_cases(good, a),
        Case("unsigned", iodef2("H-UNSIGNED"), "signature-missing"),
        Case("tampered-text", good.replace(b"192.0.2.10", b"192.0.2.66"), "bad-digest"),
        Case("restriction-downgrade", good.replace(b'restriction="need-to-know"', b'restriction="public"'),
             "bad-digest"),
        Case("forged-signature-value", _mutated(good, lambda r: setattr(
            _signature(r).find(f"{{{DS}}}SignatureValue"), "text", "AAAA" * 16)), "bad-signature"),
        Case("schema-invalid", signed("H-NO-CONTACT", contact=False), "schema-invalid"),
        Case("domain-not-allowed", signed("H-FOREIGN", name="csirt.b.test"), "domain-not-allowed"),
        Case("signer-not-allowed", signed("H-STRICT"), "signer-not-allowed", service=STRICT_SERVICE,
             pinned_only=False),
        Case("restriction-wider-than-node", signed("H-LEAK"), "restriction-wider-than-node",
             node="iodef/public/mitigation", pinned_only=False),
        Case("relay-by-stranger", relay_sign(good, signers["unknown-signer"]), "unknown-signer"),
        Case("relay-holder-extra-content", _mutated(relay_sign(good, a), lambda r: r[-1].append(
            copy.deepcopy(r[0]))), "signature-wrapping"),
    ]
    for name, reason in (
        ("unknown-signer", "unknown-signer"),
        ("expired-pinned", "certificate-expired"),
        ("not-yet-valid-pinned", "certificate-not-yet-valid"),
        ("retired-anchor", "signer-retired"),
        ("ca-expired", "certificate-expired"),
        ("ca-revoked", "certificate-revoked"),
        ("ca-sha1-certificate", "weak-algorithm"),
        ("ca-wrong-key-usage", "wrong-key-usage"),
        ("ca-weak-key", "weak-key"),
        ("ca-untrusted-issuer", "unknown-signer"),
    ):
        payload = sign_document(_tree(iodef2(f"H-{name}")), signers[name])
        cases.append(Case(name, payload, reason, pinned_only=name == "unknown-signer"))
    return cases


def _parsing_cases(good: bytes) -> list[Case]:
    body = good.decode()
    deep = "<AdditionalData dtype=\"xml\">" + "<x>" * 80 + "</x>" * 80 + "</AdditionalData>"
    huge_description = "A" * (MAX_BYTES + 1000)
    return [
        Case("xxe-file", b'<?xml version="1.0"?><!DOCTYPE IODEF-Document [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
             + good.replace(b"Botnet", b"&x;"), "doctype-forbidden", over_xmpp=False),
        Case("xxe-network", b'<!DOCTYPE IODEF-Document [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>'
             + good.replace(b"Botnet", b"&x;"), "doctype-forbidden", over_xmpp=False),
        Case("xxe-parameter-entity", b'<!DOCTYPE IODEF-Document [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd">'
             b" %p;]>" + good, "doctype-forbidden", over_xmpp=False),
        Case("external-dtd", b'<!DOCTYPE IODEF-Document SYSTEM "http://127.0.0.1:9/iodef.dtd">' + good,
             "doctype-forbidden", over_xmpp=False),
        Case("billion-laughs", _laughs(), "doctype-forbidden", over_xmpp=False),
        Case("quadratic-blowup", b'<!DOCTYPE IODEF-Document [<!ENTITY a "' + b"x" * 50_000 + b'">]>'
             + good.replace(b"Botnet", b"&a;" * 2000), "doctype-forbidden", over_xmpp=False),
        Case("doctype-utf16", ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY e "x">]>'
                               + body).encode("utf-16"), "doctype-forbidden", over_xmpp=False),
        Case("deep-nesting", b"<IODEF-Document>" + b"<a>" * 10_000 + b"</a>" * 10_000 + b"</IODEF-Document>",
             "too-deep", over_xmpp=False),
        Case("deep-nesting-in-document", good.replace(b"</Incident>", deep.encode() + b"</Incident>"),
             "too-deep"),
        Case("oversized", good.replace(b"Botnet", huge_description.encode()), "too-large"),
        Case("invalid-utf8", good.replace(b"Botnet", b"Bot\xff\xfenet"), "malformed-xml", over_xmpp=False),
        Case("not-well-formed", good[:-20], "malformed-xml", over_xmpp=False),
        Case("undefined-entity", good.replace(b"Botnet", b"&boom;"), "malformed-xml", over_xmpp=False),
        Case("empty", b"", "malformed-xml", over_xmpp=False),
        Case("payload-missing", None, "payload-missing", over_xmpp=False),
        Case("wrong-namespace", good.replace(NS_V2.encode(), b"urn:example:iodef-lookalike"),
             "wrong-namespace"),
        Case("not-iodef", b'<report xmlns="urn:example:not-iodef"><text>hello</text></report>',
             "wrong-namespace"),
    ]


def _wrapping_cases(good: bytes, a: SigningIdentity) -> list[Case]:
    def forged_incident(root: etree._Element) -> etree._Element:
        incident = copy.deepcopy(root.find(f"{{{NS_V2}}}Incident"))
        incident.find(f"{{{NS_V2}}}Description").text = "FORGED: block 198.51.100.1"
        return incident

    def moved_signed_incident(root: etree._Element) -> None:
        genuine = root.find(f"{{{NS_V2}}}Incident")
        hideout = etree.Element(f"{{{NS_V2}}}AdditionalData", dtype="xml")
        root.insert(0, forged_incident(root))
        hideout.append(genuine)
        root.insert(1, hideout)

    def duplicated_document(root: etree._Element) -> None:
        genuine = copy.deepcopy(root)
        root.remove(root[-1])  # the forged outer document has no signature of its own
        root[0].find(f"{{{NS_V2}}}Description").text = "FORGED outer document"
        holder = etree.SubElement(root, f"{{{NS_V2}}}AdditionalData", dtype="xml")
        holder.append(genuine)

    def object_wrapped_copy(root: etree._Element) -> None:
        obj = etree.SubElement(_signature(root), f"{{{DS}}}Object")
        obj.append(forged_incident(root))

    def signature_moved(root: etree._Element) -> None:
        holder = root[-1]
        root.remove(holder)
        root.find(f"{{{NS_V2}}}Incident").append(holder)

    def comment_hides_signature(root: etree._Element) -> None:
        holder = root[-1]
        holder.replace(holder[0], etree.Comment(etree.tostring(holder[0]).decode().replace("--", "")))

    reference = f".//{{{DS}}}Reference"
    return [
        Case("wrap-moved-signed-element", _mutated(good, moved_signed_incident), "bad-digest"),
        Case("wrap-duplicated-document", _mutated(good, duplicated_document), "signature-wrapping"),
        Case("wrap-two-signatures", _mutated(good, lambda r: r[0].append(copy.deepcopy(r[-1]))),
             "signature-wrapping"),
        Case("wrap-extra-reference", _mutated(good, lambda r: _signature(r).find(
            f"{{{DS}}}SignedInfo").append(copy.deepcopy(_signature(r).find(reference)))), "bad-reference"),
        Case("wrap-signature-over-sibling", _signature_over_sibling(a), "bad-reference"),
        Case("wrap-object-copy", _mutated(good, object_wrapped_copy), "signature-wrapping"),
        Case("wrap-signature-misplaced", _mutated(good, lambda r: r[0].append(_signature(r))),
             "signature-misplaced"),
        Case("wrap-signature-moved", _mutated(good, signature_moved), "bad-digest"),
        Case("comment-hides-signature", _mutated(good, comment_hides_signature), "signature-missing"),
        Case("namespace-swap", good.replace(NS_V2.encode(), NS_V1.encode()), "bad-digest"),
        Case("namespace-lookalike-signature", good.replace(DS.encode(), b"http://www.w3.org/2000/09/xmldsig#x"),
             "signature-missing"),
    ]


def _signature_over_sibling(a: SigningIdentity) -> bytes:
    """A genuine signature whose reference covers only a decoy element, next to a forged Incident."""
    data = iodef2("H-SIBLING", description="FORGED and unsigned").replace(
        b"</Incident>", b'</Incident><AdditionalData dtype="string" Id="decoy">harmless</AdditionalData>')
    return _sign_with(data, a, method=_method(a, "sha256"), digest="http://www.w3.org/2001/04/xmlenc#sha256",
                      reference_uri="#decoy")


def _method(identity: SigningIdentity, digest: str) -> str:
    kind = "rsa" if isinstance(identity.private_key, rsa.RSAPrivateKey) else "ecdsa"
    prefix = "http://www.w3.org/2000/09/xmldsig#" if (kind, digest) == ("rsa", "sha1") else \
        "http://www.w3.org/2001/04/xmldsig-more#"
    return f"{prefix}{kind}-{digest}"


def _algorithm_cases(good: bytes, a: SigningIdentity) -> list[Case]:
    def algorithm(xpath: str, value: str) -> Callable[[etree._Element], None]:
        return lambda r: _signature(r).find(xpath).set("Algorithm", value)

    def extra_transform(root: etree._Element) -> None:
        etree.SubElement(_signature(root).find(f".//{{{DS}}}Transforms"), f"{{{DS}}}Transform",
                         Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116")

    sha1 = _sign_with(iodef2("H-SHA1"), a, method=_method(a, "sha1"), digest=SHA1_DIGEST)
    return [
        Case("sha1-signature", sha1, "weak-algorithm"),
        Case("sha1-digest", _mutated(good, algorithm(f".//{{{DS}}}DigestMethod", SHA1_DIGEST)),
             "weak-algorithm"),
        Case("hmac-signature", _mutated(good, algorithm(f".//{{{DS}}}SignatureMethod",
                                                        "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256")),
             "unsupported-algorithm"),
        Case("xpath-transform", _mutated(good, extra_transform), "unsupported-algorithm"),
        Case("no-keyinfo", _mutated(good, lambda r: _signature(r).remove(
            _signature(r).find(f"{{{DS}}}KeyInfo"))), "certificate-missing"),
        Case("broken-certificate", _mutated(good, lambda r: setattr(
            _signature(r).find(f".//{{{DS}}}X509Certificate"), "text", "AAAA")), "bad-certificate"),
    ]


# --- memory: run the corpus again and again in a fresh process ---------------------------------------------


def measure(passes: int) -> None:
    """Print JSON: peak RSS after one pass over the corpus and after ``passes`` passes, and the time."""
    from xmppbridge.paths.receive import receive_item
    from xmppbridge.store import Store

    world = build_world()
    corpus = build_corpus(world)
    peaks = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory, Store(Path(directory) / "m.sqlite") as store:
        for n in range(passes):
            for case in corpus:
                receive_item(
                    store,
                    world.trust,
                    ItemRef(case.service, case.node, f"{case.name}-{n}"),
                    case.payload,
                    max_bytes=MAX_BYTES,
                )
            peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    json.dump({"first_kb": peaks[0], "last_kb": peaks[-1], "seconds": time.monotonic() - started,
               "cases": len(corpus)}, sys.stdout)

