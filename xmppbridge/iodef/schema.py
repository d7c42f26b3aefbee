"""Offline XML Schema validation of IODEF 1.0 (RFC 5070) and 2.0 (RFC 7970) documents.

The XSDs import each other through remote ``schemaLocation`` URLs (xmldsig, xml.xsd, iodef-enum,
iodef-sci, and iodef-sci in turn imports iodef-1.0). The bridge must never fetch a schema at run time
(RFC 6545 §9.1), so every import is answered from ``schemas/`` through ``_OfflineResolver``, which
reads the URL -> file map from ``schemas/catalog.xml`` and refuses everything else.

Why a resolver and not ``XML_CATALOG_FILES``: libxml2 reads that variable once, when it first loads
catalogs, which may already have happened (another library, an earlier parse) by the time this module
runs. A resolver registered on the parser that reads the XSDs is consulted for the imports too, because
lxml routes the document loads made during ``xmlSchemaParse`` to that parser's resolvers.
"""

from __future__ import annotations

import os
import threading
from functools import cache, lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lxml import etree

from xmppbridge.errors import BridgeError, NotIodef
from xmppbridge.iodef.model import NS_V1, NS_V2, VERSION_BY_NS

SCHEMAS_ENV = "XMPPBRIDGE_SCHEMAS"
ROOT_NAME = "IODEF-Document"
_CATALOG_NS = "urn:oasis:names:tc:entity:xmlns:xml:catalog"
_XSD_BY_VERSION = {"1.0": "iodef/iodef-1.0.xsd", "2.0": "iodef/iodef-2.0.xsd"}


class SchemaSetupError(BridgeError):
    """The local schema set is missing, incomplete or tries to pull something from outside it."""


def schemas_dir() -> Path:
    """``$XMPPBRIDGE_SCHEMAS`` if set, else ``<repo root>/schemas``."""
    return _resolved_schemas_dir(os.environ.get(SCHEMAS_ENV) or None)


@lru_cache(maxsize=8)
def _resolved_schemas_dir(env: str | None) -> Path:
    # Cached: resolving the path (several syscalls) cost more than validating a small document.
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2] / "schemas"


def catalog_map(directory: Path) -> dict[str, Path]:
    """Remote URL -> local file, from the ``uri`` and ``system`` entries of ``<directory>/catalog.xml``."""
    catalog = directory / "catalog.xml"
    if not catalog.is_file():
        raise SchemaSetupError(f"{catalog}: not found (set {SCHEMAS_ENV} to the schemas directory)")
    # The catalog is our own file, but there is no reason to parse it more permissively than input.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.parse(str(catalog), parser).getroot()
    mapping: dict[str, Path] = {}
    for entry in root.iter(f"{{{_CATALOG_NS}}}uri", f"{{{_CATALOG_NS}}}system"):
        remote = entry.get("name") or entry.get("systemId")
        local = entry.get("uri")
        if remote and local:
            mapping[remote] = (catalog.parent / local).resolve()
    return mapping


class _OfflineResolver(etree.Resolver):
    """Serves mapped URLs and files inside the schemas directory; refuses everything else.

    libxml2 turns an exception raised here into a generic "Failed to parse the XML resource" schema
    error (lxml does not re-raise it), so refusals are also recorded in ``refused`` and reported by
    ``_compile`` with the offending URL.
    """

    def __init__(self, directory: Path, mapping: dict[str, Path]) -> None:
        super().__init__()
        self.directory = directory
        self.mapping = mapping
        self.served: list[str] = []
        self.refused: list[str] = []

    def resolve(self, system_url: str | None, public_id: str | None, context: object) -> object:
        url = system_url or ""
        local = self.mapping.get(url) or self._local_path(url)
        if local is None:
            self.refused.append(url)
            raise SchemaSetupError(f"refusing to load {url!r}: not mapped in catalog.xml")
        self.served.append(url)
        return self.resolve_filename(str(local), context)

    def _local_path(self, url: str) -> Path | None:
        """A file inside the schemas directory (the XSD we were asked to compile, or a relative import)."""
        parts = urlsplit(url)
        if parts.scheme == "file":
            path = Path(unquote(parts.path))
        elif parts.scheme == "" and url:
            path = Path(url)
        else:
            return None  # http, https, ftp, ...: never
        path = path.resolve()
        if path.is_file() and path.is_relative_to(self.directory):
            return path
        return None


@cache
def _compile(version: str, directory: Path) -> tuple[etree.XMLSchema, threading.Lock]:
    mapping = catalog_map(directory)
    resolver = _OfflineResolver(directory, mapping)
    # The W3C XSDs carry DOCTYPEs: load_dtd=False keeps libxml2 from fetching XMLSchema.dtd, while the
    # internal subset (entity declarations in xmldsig-core-schema.xsd) is still honoured.
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=True, huge_tree=False)
    parser.resolvers.add(resolver)
    xsd = directory / _XSD_BY_VERSION[version]
    try:
        schema = etree.XMLSchema(etree.parse(str(xsd), parser), attribute_defaults=False)
    except (etree.XMLSchemaParseError, OSError, etree.XMLSyntaxError) as exc:
        if resolver.refused:
            raise SchemaSetupError(
                f"{xsd}: import of {resolver.refused[0]!r} is not available offline; "
                f"add it to {directory / 'catalog.xml'}"
            ) from exc
        raise SchemaSetupError(f"{xsd}: does not compile: {exc}") from exc
    if resolver.refused:  # libxml2 may treat a failed import as a warning and carry on
        raise SchemaSetupError(f"{xsd}: import of {resolver.refused[0]!r} is not available offline")
    # An XMLSchema keeps its error_log on the instance, so concurrent validations would mix their errors.
    return schema, threading.Lock()


def get_schema(version: str) -> etree.XMLSchema:
    """The compiled schema for ``"1.0"`` or ``"2.0"`` (compiled once per schemas directory)."""
    if version not in _XSD_BY_VERSION:
        raise ValueError(f"unknown IODEF version {version!r}")
    return _compile(version, schemas_dir())[0]


def detect_version(root: etree._Element) -> str:
    """``"1.0"`` or ``"2.0"`` from the root element's namespace URI (never its prefix)."""
    if not isinstance(root.tag, str):  # a comment or PI picked as "first child" of a wrapper
        raise NotIodef(f"expected an <{ROOT_NAME}> element, got {type(root).__name__}")
    qname = etree.QName(root)
    if qname.localname != ROOT_NAME:
        where = f" in namespace {qname.namespace}" if qname.namespace else ""
        raise NotIodef(f"root element is <{qname.localname}>{where}; expected <{ROOT_NAME}>")
    version = VERSION_BY_NS.get(qname.namespace or "")
    if version is None:
        got = f"namespace {qname.namespace!r}" if qname.namespace else "no namespace (missing xmlns?)"
        raise NotIodef(f"<{ROOT_NAME}> has {got}; expected {NS_V1!r} (IODEF 1.0) or {NS_V2!r} (IODEF 2.0)")
    return version


def schema_errors(root: etree._Element) -> list[str]:
    """Validation errors of ``root`` against its version's XSD, each ``"line N: message"``; [] if valid.

    ``root`` may sit inside a larger tree (a pubsub item); lxml then validates just that subtree.
    """
    version = detect_version(root)
    schema, lock = _compile(version, schemas_dir())
    before = _attribute_count(root)
    with lock:
        # XMLSchema is built without attribute_defaults, so validation must not add the 1.0 XSD's
        # restriction defaults (IncidentID="public", EventData="default", ...); checked below anyway,
        # because classification would silently read wrong audiences from a tree that had them.
        valid = schema.validate(root)
        log = [] if valid else list(schema.error_log)
    # "{urn:ietf:params:xml:ns:iodef-2.0}Incident" -> "Incident": the version is known, and the long
    # Clark names make the operator-facing message hard to read. Other namespaces stay qualified.
    own_ns = "{" + (etree.QName(root).namespace or "") + "}"
    errors = [f"line {e.line}: {e.message.replace(own_ns, '')}" for e in log]
    if _attribute_count(root) != before:
        raise RuntimeError("schema validation added attributes to the document (attribute defaults?)")
    if not valid and not errors:
        errors = ["line 0: document is not valid (no detail from the validator)"]
    return errors


_COUNT_ATTRIBUTES = etree.XPath("count(descendant-or-self::*/@*)")  # in libxml2, not an element walk


def _attribute_count(root: etree._Element) -> int:
    return int(_COUNT_ATTRIBUTES(root))
