"""``xmppbridge config upgrade``: a config with ``trust.anchors``/``trust.domains``/``subscriptions``/
``pubsub.whitelist`` -> the same bridge written as a member registry (``members:``) and ``audiences:``.

Each subscription becomes a member: its pubsub service; its bridge, the whitelisted JID of the same
parent domain (pubsub.b.test <-> bridge.b.test); its certificate, the pinned anchor the subscription's
``signers`` name, else the one anchor that speaks for the service's domain; its domains, what that
certificate speaks for (subjectAltName and ``trust.domains``) plus ``allow_domains``. Our own entry comes
from ``component``, ``pubsub.service``, ``signing``. The whitelist becomes the audience of every
non-public restriction, as it was.

Nothing is guessed that would grant access: a whitelisted JID without a subscription, or a subscription
whose certificate cannot be told, stops the upgrade with what to write by hand. The result is loaded
and compared with the old config (subscriptions, pinned certificates, node audiences) before it is
offered.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from xmppbridge.config.settings import Config
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS
from xmppbridge.policy.nodes import node_name
from xmppbridge.signing.certfiles import certificate_files, load_certificates
from xmppbridge.signing.keys import fingerprint
from xmppbridge.signing.trust import ANY_DOMAIN, domain_allowed


class UpgradeError(Exception):
    """The config cannot be upgraded mechanically; the message says what to write by hand."""


@dataclass(frozen=True)
class Upgrade:
    data: dict[str, Any]  # the new config mapping
    notes: tuple[str, ...]  # what moved where, one line each


def upgrade(config: Config, data: dict[str, Any]) -> Upgrade:
    """The registry form of ``data`` (the YAML mapping ``config`` was loaded from)."""
    if data.get("members") is not None:
        raise UpgradeError("this config already has members:; nothing to upgrade")
    new = copy.deepcopy(data)
    anchors = _anchor_files(config)
    whitelist = [j.lower() for j in (data.get("pubsub") or {}).get("whitelist") or []]
    members, notes, used = [_own_entry(config, data)], [], set()
    for i, sub in enumerate(data.get("subscriptions") or []):
        service = config.subscriptions[i].service
        parent = service.partition(".")[2]
        name = parent or service
        bridge = next((j for j in whitelist if j.partition(".")[2] == parent), None)
        if bridge is None:
            raise UpgradeError(f"subscriptions[{i}] ({service}): no whitelisted bridge JID of {parent}; "
                               "add that member's bridge to pubsub.whitelist, or write its members: entry "
                               "by hand (bridge: its component JID)")
        certificate, file = _certificate_for(config, service, parent, anchors, f"subscriptions[{i}]")
        domains = list(dict.fromkeys((*config.trust.bound_domains(certificate),
                                      *[d for d in _list(sub.get("allow_domains")) if d != ANY_DOMAIN])))
        entry: dict[str, Any] = {"name": name, "bridge": bridge, "pubsub": service,
                                 "domains": domains, "certificate": _relative(file, config.file)}
        if sub.get("nodes", "all") != "all":
            entry["nodes"] = sub["nodes"]
        if sub.get("max_items") is not None:
            entry["max_items"] = sub["max_items"]
        used.add(bridge)
        members.append(entry)
        notes.append(f"{service}: member {name}, bridge {bridge}, certificate {entry['certificate']}, "
                     f"domains {', '.join(domains) or '(none)'}")
    unmatched = sorted(set(whitelist) - used)
    if unmatched:
        raise UpgradeError(f"pubsub.whitelist names {', '.join(unmatched)}, which no subscription matches; "
                           "add a members: entry for it by hand (its pubsub service, domains, certificate)")
    peers = [m["name"] for m in members[1:]]
    new["members"] = members
    if peers:
        new["audiences"] = {r: "all" for r in RESTRICTIONS if r != "public"}
        notes.append(f"pubsub.whitelist -> audiences: every non-public restriction readable by "
                     f"{', '.join(peers)}, as before; narrow it per restriction or restriction/purpose")
    new.get("pubsub", {}).pop("whitelist", None)
    new.pop("subscriptions", None)
    new.get("signing", {}).pop("domains", None)
    trust = new.get("trust") or {}
    trust.pop("anchors", None)
    trust.pop("domains", None)
    if not trust:
        new.pop("trust", None)
    notes.append("removed trust.anchors, trust.domains, subscriptions, pubsub.whitelist, signing.domains "
                 "(derived from members: now); trust.ca and trust.crl stay")
    return Upgrade(new, tuple(notes))


def same_bridge(old: Config, new: Config) -> list[str]:
    """What the upgraded config would change: [] when subscriptions, pinned certificates and every
    node's audience are as before."""
    problems = []
    if sorted(s.service for s in old.subscriptions) != sorted(s.service for s in new.subscriptions):
        problems.append("the subscriptions differ")
    missing = set(old.trust.certificates) - set(new.trust.certificates)
    if missing:
        problems.append(f"{len(missing)} pinned certificate(s) would no longer be trusted (anchors that "
                        "no subscription names; add members: entries for them)")
    for restriction in RESTRICTIONS:
        for purpose in PURPOSES:
            node = node_name(old.node_prefix, restriction, purpose)
            if old.node_audience(node).bridges != new.node_audience(node).bridges:
                problems.append(f"{node}: readers would change")
    return problems


def _own_entry(config: Config, data: dict[str, Any]) -> dict[str, Any]:
    own = data.get("signing") or {}
    return {"name": config.pubsub_service.partition(".")[2] or config.jid, "bridge": config.jid,
            "pubsub": config.pubsub_service, "domains": list(config.signing_domains) or _san(config),
            "certificate": own.get("cert")}


def _san(config: Config) -> list[str]:
    [certificate, *_] = load_certificates(config.signing_cert, "signing.cert")
    return list(config.trust.bound_domains(certificate))


def _anchor_files(config: Config) -> dict[str, Path]:
    """Fingerprint -> the file that pins it (``trust.anchors`` files and directories)."""
    files: dict[str, Path] = {}
    for path in config.trust_anchors:
        for file in certificate_files(path, "trust.anchors"):
            for certificate in load_certificates(file, "trust.anchors"):
                files[fingerprint(certificate)] = file
    return files


def _certificate_for(config: Config, service: str, parent: str, anchors: dict[str, Path],
                     key: str) -> tuple[x509.Certificate, Path]:
    pinned = [(config.trust.certificates[fp], file) for fp, file in anchors.items()
              if fp in config.trust.certificates]
    rule = config.trust.sources.get(service)
    if rule is not None and rule.signers:
        candidates = [(c, f) for c, f in pinned if any(ref.matches(c) for ref in rule.signers)]
    else:
        candidates = [(c, f) for c, f in pinned
                      if any(domain_allowed(d, [parent]) for d in config.trust.bound_domains(c))]
    if len(candidates) != 1:
        raise UpgradeError(f"{key} ({service}): {len(candidates)} pinned certificates could be "
                           f"its signer; name it with {key}.signers (a SHA-256 fingerprint) or write the "
                           "members: entry by hand")
    return candidates[0]


def _list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _relative(file: Path, config_file: Path) -> str:
    try:
        return str(file.relative_to(config_file.parent))
    except ValueError:
        return str(file)
