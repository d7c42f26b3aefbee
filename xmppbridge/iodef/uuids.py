"""UUIDs derived from what an object stands for, the same in every member's bridge and in every version.

A tool that loads exports from several members (STIX bundles, MISP events) merges the same incident
instead of duplicating it when both give it the same id. So the ids are SHA-1 name-based UUIDs (RFC 4122
§4.3) under a namespace of this project's own, of the object's kind and its natural key: the incident's
IncidentID ``name`` and text (RFC 7970 §3.4, globally unique by definition), the member's ``name``. The
version bits are a UUIDv4's, which STIX 2.1 §2.9 asks of its domain objects; the other 122 bits are as
unpredictable as random ones.
"""

from __future__ import annotations

import functools
import hashlib
import uuid

NAMESPACE = uuid.UUID("6f1e0f6c-52a3-4b0e-9d0e-6d8b3f8a2c11")  # xmppbridge's own


def derived(kind: str, *key: str) -> uuid.UUID:
    """``uuid5(NAMESPACE, "kind:key/...")`` with a UUIDv4's version bits."""
    return uuid.UUID(bytes=_derived_bytes(kind, key))


def derived_text(kind: str, *key: str) -> str:
    """``str(derived(kind, *key))``, without the ``UUID`` object: an export writes a thousand a page."""
    h = _derived_bytes(kind, key).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, without the two ``UUID`` objects it builds."""
    h = _name_based(namespace, name, 0x50).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _derived_bytes(kind: str, key: tuple[str, ...]) -> bytes:
    return _name_based(NAMESPACE, f"{kind}:{'/'.join(key)}", 0x40)  # a UUIDv4's version bits


def _name_based(namespace: uuid.UUID, name: str, version: int) -> bytes:
    """Written out (RFC 4122 §4.3: the first 16 bytes of the SHA-1 of namespace and name, then version
    and variant), because ``uuid.uuid5`` and ``UUID(version=)`` build two objects for each."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = digest[6] & 0x0F | version
    digest[8] = digest[8] & 0x3F | 0x80  # the RFC 4122 variant
    return bytes(digest)


def incident_uuid(name: str, incident_id: str) -> uuid.UUID:
    """An incident's: the STIX ``incident`` id and the MISP event's UUID."""
    return derived("incident", name, incident_id)


@functools.lru_cache(maxsize=1024)  # a consortium's few members, in every event and bundle
def member_uuid(name: str) -> uuid.UUID:
    """A reporting CSIRT's (IncidentID ``name``): the STIX ``identity`` and the MISP organisation."""
    return derived("identity", name)
