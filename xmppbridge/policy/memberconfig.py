"""The ``members:`` and ``audiences:`` sections of a bridge config -> ``Registry`` and ``Audiences``.

::

    members:                      # or a file shared by the consortium: members: consortium.yaml
      - name: cert-b
        bridge: bridge.b.test     # its bridge's component JID
        pubsub: pubsub.b.test     # its pubsub service
        domains: [b.test]         # the IncidentID domains it speaks for
        certificate: pki/b.pem    # its signing certificate(s), pinned; or  ca: pki/ca-b.pem
        nodes: all                # what we follow from it (default all); follow: false not to subscribe
    audiences:
      partner: all
      need-to-know: [cert-b]

A registry that contradicts itself is refused with ``<file>: <key>: <problem>``: two members with one
name, bridge or pubsub service, two members claiming one IncidentID domain (or one inside the other's),
a member with no certificate it could sign with, or our own entry naming another certificate than
``signing.cert``.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from xmppbridge.configfile import ConfigReader
from xmppbridge.jids import InvalidJID, service_key
from xmppbridge.policy.audiences import Audiences, flat_audiences, parse_audiences
from xmppbridge.policy.members import EMPTY, Member, Registry
from xmppbridge.signing.certfiles import certificate_files, load_certificates
from xmppbridge.signing.keys import fingerprint, key_strength_problem, usage_problem, validity_problem
from xmppbridge.signing.trust import domain_allowed, is_ca
from xmppbridge.signing.trustconfig import domain_list

_KEYS = {"name", "bridge", "pubsub", "domains", "certificate", "ca", "follow", "nodes", "max_items"}


def read_registry(r: ConfigReader, own_jid: str, own_certificate: x509.Certificate | None) -> Registry:
    spec = r.get("members", None, (list, str))
    if spec is None:
        return EMPTY
    if isinstance(spec, str):  # one registry file for the whole consortium
        spec = _shared_file(r, r.path("members", spec))
    members = [_member(r, f"members[{i}]", entry) for i, entry in enumerate(spec)]
    _check_unique(r, members)
    own = next((m for m in members if m.bridge == own_jid), None)
    if own is not None and own_certificate is not None and own.certificates and not any(
            fingerprint(c) == fingerprint(own_certificate) for c in own.certificates):
        i = members.index(own)
        raise r.error(f"members[{i}].certificate", f"is our own entry ({own_jid}) but does not hold our "
                                                   "signing.cert: peers would refuse what we sign")
    return Registry(tuple(members), own.name if own else None)


def read_audiences(r: ConfigReader, registry: Registry, whitelist: tuple[str, ...]) -> Audiences:
    spec = r.get("audiences", None, dict)
    if spec is None:
        if registry.members:
            return parse_audiences({}, {m.name: m.bridge for m in registry.peers()})
        return flat_audiences(whitelist)
    if not registry.members:
        raise r.error("audiences", "names members: add the members: registry")
    if whitelist:
        raise r.error("pubsub.whitelist", "and audiences: both say who reads our nodes; keep audiences "
                                          "(xmppbridge config upgrade moves the whitelist into it)")
    try:
        return parse_audiences(spec, {m.name: m.bridge for m in registry.peers()})
    except ValueError as exc:
        raise r.error("audiences", str(exc)) from None


def _shared_file(r: ConfigReader, path: Path) -> list[Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise r.error("members", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise r.error("members", f"{path} is not valid YAML: {exc}") from None
    if isinstance(data, dict):
        data = data.get("members")
    if not isinstance(data, list):
        raise r.error("members", f"{path} must hold a list of members (or a mapping with members:)")
    return data


def _member(r: ConfigReader, key: str, entry: Any) -> Member:
    if not isinstance(entry, dict):
        raise r.error(key, "must be a mapping with name, bridge, pubsub, domains and certificate or ca")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise r.error(key, f"unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_KEYS))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or name == "all":
        raise r.error(f"{key}.name", "must be a name such as cert-b (not 'all')")
    bridge, pubsub = (_jid(r, f"{key}.{k}", entry.get(k)) for k in ("bridge", "pubsub"))
    domains = domain_list(r, f"{key}.domains", entry.get("domains"), allow_any=False)
    certificates = _certificates(r, f"{key}.certificate", entry.get("certificate"))
    authorities = _certificates(r, f"{key}.ca", entry.get("ca"))
    _check_signer(r, key, certificates, authorities)
    follow = entry.get("follow", True)
    if not isinstance(follow, bool):
        raise r.error(f"{key}.follow", "must be true or false")
    nodes = entry.get("nodes", "all")
    if nodes != "all" and not (isinstance(nodes, list) and nodes and all(isinstance(n, str) for n in nodes)):
        raise r.error(f"{key}.nodes", "must be 'all' or a non-empty list of node names")
    max_items = entry.get("max_items", 5000)
    if not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 1:
        raise r.error(f"{key}.max_items", "must be a positive whole number (the member's nodes' max_items)")
    return Member(name.strip(), bridge, pubsub, domains, certificates, authorities, follow,
                  None if nodes == "all" else tuple(nodes), max_items)


def _jid(r: ConfigReader, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise r.error(key, "is required: a bare domain JID such as pubsub.b.test")
    try:
        jid = service_key(value)
    except InvalidJID as exc:
        raise r.error(key, f"is not a JID ({exc})") from None
    if "@" in jid:
        raise r.error(key, "must be a bare domain JID such as pubsub.b.test")
    return jid


def _certificates(r: ConfigReader, key: str, value: Any) -> tuple[x509.Certificate, ...]:
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    found: list[x509.Certificate] = []
    for i, item in enumerate(values):
        item_key = key if len(values) == 1 else f"{key}[{i}]"
        if not isinstance(item, str):
            raise r.error(item_key, f"must be a path to a PEM file, got {item!r}")
        for file in certificate_files(r.path(item_key, item), item_key):
            found.extend(load_certificates(file, item_key))
    return tuple(found)


def _check_signer(r: ConfigReader, key: str, certificates: tuple[x509.Certificate, ...],
                  authorities: tuple[x509.Certificate, ...]) -> None:
    """A member we could never believe is a registry mistake, not a peer to wait for."""
    if not certificates and not authorities:
        raise r.error(key, "has no certificate (its signing certificate) and no ca (the CA issuing it): "
                           "nothing it signs could be verified")
    now = datetime.datetime.now(datetime.UTC)
    problems, usable = [], False
    for certificate in certificates:
        problem = (usage_problem(certificate) or validity_problem(certificate, now))
        strength = key_strength_problem(certificate.public_key())
        if is_ca(certificate):
            problems.append("is a CA certificate; put it under ca:")
        elif problem or strength:
            problems.append(problem.text if problem else str(strength))
        else:
            usable = True
    for authority in authorities:
        if not is_ca(authority):
            raise r.error(f"{key}.ca", "is not a CA certificate (BasicConstraints CA:TRUE); pin a member's "
                                       "own certificate under certificate:")
        strength = key_strength_problem(authority.public_key())
        if strength:
            raise r.error(f"{key}.ca", strength)
    if certificates and not usable and not authorities:
        raise r.error(f"{key}.certificate", "holds no certificate the member could sign with: "
                                            + "; ".join(problems))


def _check_unique(r: ConfigReader, members: list[Member]) -> None:
    for field_name in ("name", "bridge", "pubsub"):
        seen: dict[str, int] = {}
        for i, member in enumerate(members):
            value = getattr(member, field_name)
            if value in seen:
                raise r.error(f"members[{i}].{field_name}", f"{value} is also members[{seen[value]}]'s")
            seen[value] = i
    claims: list[tuple[str, int]] = []  # the domains of the members before members[i]
    for i, member in enumerate(members):
        for domain in member.domains:
            for other, j in claims:
                if domain_allowed(domain, [other]) or domain_allowed(other, [domain]):
                    raise r.error(f"members[{i}].domains", f"{domain} is claimed by members[{j}] "
                                  f"({members[j].name}) too, as {other}: one IncidentID domain, one member")
        claims.extend((d, i) for d in member.domains)

