"""From bytes to a classified ``Document``, splitting by audience, and stable pubsub item ids.

The pipeline is always: ``parse_untrusted`` (safe parse) -> ``detect_version`` -> schema validation ->
``classify``. Shells call ``read_document`` (bytes) or ``document_from_root`` (an element they already
got from ``parse_untrusted``, e.g. the payload of a pubsub item).
"""

from __future__ import annotations

import copy
import hashlib
import re

from lxml import etree

from xmppbridge.errors import SchemaInvalid
from xmppbridge.iodef.classify import NS_BY_VERSION, classify
from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.iodef.model import Document, Incident
from xmppbridge.iodef.parse import DEFAULT_MAX_BYTES, parse_untrusted
from xmppbridge.iodef.schema import detect_version, schema_errors

SCHEMA_MODES = ("strict", "warn")
ITEM_ID_MAX = 200
NS_DSIG = "http://www.w3.org/2000/09/xmldsig#"

# Readable item ids: the name is an FQDN (no "/", so the first "/" separates name from id unambiguously);
# the id may contain "/". Anything else is hashed.
_SAFE_NAME = re.compile(r"[A-Za-z0-9._:-]+")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:/-]+")


def read_document(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, schema_mode: str = "strict"
) -> Document:
    """Parse, validate and classify untrusted IODEF bytes.

    Raises ``TooLarge``, ``MalformedXML``, ``UnsafeXML``, ``NotIodef``, or ``SchemaInvalid`` (whose
    ``details`` lists every schema error). With ``schema_mode="warn"`` a well-formed IODEF document
    that fails the schema is accepted and its errors are kept in ``Document.schema_errors``.
    """
    _check_mode(schema_mode)
    return document_from_root(parse_untrusted(data, max_bytes=max_bytes), schema_mode=schema_mode)


def document_from_root(root: etree._Element, *, schema_mode: str = "strict") -> Document:
    """Like ``read_document`` for a root element already obtained from ``parse_untrusted``."""
    _check_mode(schema_mode)
    version = detect_version(root)
    errors = schema_errors(root)
    if errors and schema_mode == "strict":
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SchemaInvalid(f"not a valid IODEF {version} document: {errors[0]}{more}", details=errors)
    return Document(version=version, root=root, incidents=classify(root, version), schema_errors=errors)


def split_document(doc: Document) -> list[Document]:
    """``[doc]`` if all its Incidents go to the same node, else one new Document per Incident.

    A pubsub node is chosen by (restriction, purpose); an item holding Incidents of different
    restrictions would expose the narrower ones on the wider node. Each piece is a deep copy of the
    root keeping one Incident, plus root-level AdditionalData (2.0), which may describe all Incidents.
    Signatures are dropped: they covered the original document, no longer verify, and the bridge
    signs what it publishes. Pieces are validated again (a schema-valid input gives valid pieces).
    """
    if len({_category(incident) for incident in doc.incidents}) <= 1:
        return [doc]
    ns = NS_BY_VERSION[doc.version]
    # Validate pieces as strictly as the original was: "warn" input may legitimately give invalid pieces.
    mode = "warn" if doc.schema_errors else "strict"
    count = len(list(doc.root.iterchildren(f"{{{ns}}}Incident")))
    return [document_from_root(_piece(doc.root, ns, keep), schema_mode=mode) for keep in range(count)]


def _piece(root: etree._Element, ns: str, keep: int) -> etree._Element:
    piece = copy.deepcopy(root)
    piece.tail = None  # deepcopy also copies the tail, e.g. whitespace after the payload in a pubsub item
    for index, incident in enumerate(list(piece.iterchildren(f"{{{ns}}}Incident"))):
        if index != keep:
            piece.remove(incident)
    # Root level is where 2.0 puts an enveloped signature; 1.0 can only put it under an Incident.
    holders = [piece, *piece.iterchildren(f"{{{ns}}}Incident")]
    for holder in holders:
        for extra in list(holder.iterchildren(f"{{{ns}}}AdditionalData")):
            if _is_signature(extra):
                holder.remove(extra)
    return piece


def _is_signature(extra: etree._Element) -> bool:
    meaning = (extra.get("meaning") or "").strip().lower()
    return meaning == "signature" or next(extra.iterchildren(f"{{{NS_DSIG}}}Signature"), None) is not None


def _category(incident: Incident) -> tuple[str, str]:
    return incident.effective_restriction, canonical_purpose(incident.purpose)


def incident_item_id(incident: Incident) -> str:
    """A deterministic pubsub item id for ``incident`` (same IncidentID -> same id -> overwrite, §12.9).

    ``<name>/<id>`` when that is short and made of ``[A-Za-z0-9._:/-]`` only, the name has no "/",
    there is no instance and no path segment is empty, "." or ".." (ids also end up in URLs and
    file names); otherwise ``sha256:<hex>`` of ``name NUL id NUL instance``. The two forms never
    collide: readable ids contain "/", hashed ones do not.
    """
    name, ident, instance = incident.id_name, incident.id, incident.instance
    readable = f"{name}/{ident}"
    if (
        instance is None
        and len(readable) <= ITEM_ID_MAX
        and _SAFE_NAME.fullmatch(name)
        and _SAFE_ID.fullmatch(ident)
        and all(segment not in ("", ".", "..") for segment in readable.split("/"))
    ):
        return readable
    digest = hashlib.sha256("\x00".join((name, ident, instance or "")).encode("utf-8")).hexdigest()
    return f"sha256:{digest}"


def _check_mode(schema_mode: str) -> None:
    if schema_mode not in SCHEMA_MODES:
        raise ValueError(f"schema_mode must be one of {SCHEMA_MODES}, not {schema_mode!r}")
