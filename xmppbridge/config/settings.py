"""One YAML file per bridge -> typed, validated settings.

Every problem is reported as ``<file>: <key>: <what is wrong>`` so that an operator can fix it without
reading code. Relative paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from xmppbridge.chat.settings import OperatorSettings, chat_policy, operator_settings
from xmppbridge.configfile import ConfigReader
from xmppbridge.errors import ConfigError
from xmppbridge.feed.settings import FeedSettings, feed_policy, feed_settings
from xmppbridge.iodef.parse import DEFAULT_MAX_BYTES
from xmppbridge.jids import InvalidJID, service_key
from xmppbridge.lease import valid_instance_name
from xmppbridge.policy.audiences import Audience, Audiences
from xmppbridge.policy.may import Policy
from xmppbridge.policy.memberconfig import read_audiences, read_registry
from xmppbridge.policy.members import EMPTY, Registry
from xmppbridge.policy.nodes import parse_node_name
from xmppbridge.policy.relayconfig import read_relay
from xmppbridge.policy.relaying import NO_RELAY, RelayPolicy
from xmppbridge.policy.sources import Sources, with_members
from xmppbridge.signing.certfiles import load_certificates
from xmppbridge.signing.trust import NO_TRUST, TrustStore
from xmppbridge.signing.trustconfig import anchor_paths, domain_list, read_trust
from xmppbridge.xmpp.listing import PAUSE as LISTING_PAUSE
from xmppbridge.xmpp.servers import ServerAddress, parse_address

APPROVAL_MODES = ("auto", "off")


def default_instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Subscription:
    service: str  # remote pubsub service, its normalised bare JID (jids.service_key), e.g. pubsub.b.test
    nodes: tuple[str, ...] | None  # None = "all": discover the service's IODEF nodes
    # The remote nodes' max_items. Below it, an item missing at catch-up was retracted; at it, the
    # node may have evicted old items on its own (see xmpp.mirror.retracted_while_away).
    max_items: int = 5000


@dataclass(frozen=True)
class Config:
    file: Path
    jid: str
    secret: str
    # component.server (one) or component.servers (the nodes of a clustered server, tried in turn)
    servers: tuple[ServerAddress, ...]
    pubsub_service: str
    node_prefix: str
    signing_key: Path
    signing_cert: Path
    # IncidentID domains we publish for besides the certificate's subjectAltName dNSNames, for members
    # (coordinators) that publish for others; peers bind the same domains to us in trust.domains.
    signing_domains: tuple[str, ...]
    trust_anchors: tuple[Path, ...]
    subscriptions: tuple[Subscription, ...]
    store_path: Path  # store.path: the SQLite file (the embedded default)
    feed: FeedSettings  # the HTTP feed: listen address, base URL, users, TLS (see feed.settings)
    max_document_bytes: int = DEFAULT_MAX_BYTES
    schema_mode: str = "strict"
    discovery_interval: float = 60.0
    check_interval: float = 60.0  # renew subscriptions and re-check one followed node (xmpp.mirror)
    check_pause: float = LISTING_PAUSE  # a peer listed again after this many times its answer (xmpp.listing)
    reconcile_interval: float = 300.0  # bring our nodes' affiliations to their audiences (xmpp.reconcile)
    trust: TrustStore = NO_TRUST  # trust: + subscriptions[].signers/allow_domains (signing.trustconfig)
    operators: OperatorSettings = field(default_factory=OperatorSettings)  # chat:, rooms:, admins:, ...
    spool_dir: Path | None = None  # watched folder: files dropped here are published (xmppbridge.paths.spool)
    spool_interval: float = 2.0
    registry: Registry = EMPTY  # members: (policy.members), the source of trust, subscriptions, audiences
    audiences: Audiences = field(default_factory=Audiences)  # who reads each category of our nodes
    # pubsub.approval: "auto" creates non-public nodes with the authorize access model where our service
    # offers it (xmpp.approvals), "off" keeps them whitelist.
    approval: str = "auto"
    # store.url: a PostgreSQL database (postgresql://user@host:port/db) instead of the SQLite file, for
    # several processes and machines over one store (issue 16; store.pg)
    store_url: str | None = None
    # instance.name: this `run` among several over one store (process/leadership.py), as status,
    # /healthz and /metrics name it; default <hostname>:<pid>
    instance_name: str = field(default_factory=default_instance_name)
    # relay: what this member, as a coordinator, re-publishes of what it receives (policy.relaying)
    relay: RelayPolicy = NO_RELAY

    @property
    def store_target(self) -> str:
        """What ``Store`` opens: the PostgreSQL URL, or else the SQLite path."""
        return self.store_url if self.store_url is not None else str(self.store_path)

    @property
    def feed_listen_host(self) -> str:
        return self.feed.listen_host

    @property
    def feed_listen_port(self) -> int:
        return self.feed.listen_port

    @property
    def feed_base_url(self) -> str:
        return self.feed.base_url

    @cached_property
    def sources(self) -> Sources:  # computed once: asked for every item received
        return Sources(frozenset(s.service for s in self.subscriptions))

    @cached_property
    def policy(self) -> Policy:
        """Who may do what, as one table (``policy.may``): the feed's users and anonymous readers, chat
        readers, rooms, admins and the members' audiences."""
        return chat_policy(self.operators, replace(feed_policy(self.feed), audiences=self.audiences))

    def node_audience(self, node: str) -> Audience:
        """Who may read one of our nodes (``<prefix>/<restriction>/<purpose>``); a node name we did not
        make has no audience."""
        category = parse_node_name(self.node_prefix, node)
        return self.audiences.of(*category) if category else Audience(open=False)


def load_config(file: str | Path, *, overrides: Mapping[str, object] | None = None) -> Config:
    """``overrides``: dotted keys set before the file is checked (``serve-feed --listen`` sets
    ``feed.listen``), so every rule applies to what the process will really use."""
    file = Path(file)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(file), "(file)", f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), "(file)", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(file), "(file)", "must be a YAML mapping of sections")
    for key, value in (overrides or {}).items():
        _override(file, data, key, value)
    r = ConfigReader(file, data)

    jid = r.get("component.jid")
    if "@" in jid or "/" in jid:
        raise r.error("component.jid", "must be a bare domain JID such as bridge.a.test")
    secret = r.get("component.secret", None)
    secret_file = r.get("component.secret_file", None)
    if (secret is None) == (secret_file is None):
        raise r.error("component.secret", "give exactly one of secret or secret_file")
    if secret_file is not None:
        secret = r.path("component.secret_file", secret_file).read_text(encoding="utf-8").strip()
    trust = anchor_paths(r)
    signing_key = r.path("signing.key", r.get("signing.key"))
    signing_cert = r.path("signing.cert", r.get("signing.cert"))
    registry = read_registry(r, service_key(jid), _own_certificate(signing_cert))

    subscriptions = []
    for i, sub in enumerate(r.get("subscriptions", [], list)):
        key = f"subscriptions[{i}]"
        if not isinstance(sub, dict) or not isinstance(sub.get("service"), str):
            raise r.error(key, "must be a mapping with a 'service' JID and 'nodes' (a list or 'all')")
        try:
            service = service_key(sub["service"])  # the form stanzas come from: one key per peer
        except InvalidJID as exc:
            raise r.error(f"{key}.service", f"is not a JID ({exc})") from None
        nodes = sub.get("nodes", "all")
        max_items = sub.get("max_items", 5000)
        if not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 1:
            raise r.error(f"{key}.max_items", "must be a positive whole number (the remote nodes' max_items)")
        if nodes == "all":
            subscriptions.append(Subscription(service, None, max_items))
        elif isinstance(nodes, list) and nodes and all(isinstance(n, str) for n in nodes):
            subscriptions.append(Subscription(service, tuple(nodes), max_items))
        else:
            raise r.error(f"{key}.nodes", "must be 'all' or a non-empty list of node names")

    subscriptions = _followed(r, registry, subscriptions)
    whitelist = r.get("pubsub.whitelist", [], list)
    if not all(isinstance(j, str) for j in whitelist):
        raise r.error("pubsub.whitelist", "must be a list of bridge JIDs")
    audiences = read_audiences(r, registry, tuple(whitelist))
    relay = read_relay(r, registry, audiences)
    # member:<name> grants: a member's people read the feed and chat as its bridge reads our nodes.
    member_rights = {m.name: audiences.rights_of(m.name) for m in registry.peers()}
    feed = feed_settings(r, member_rights)

    schema_mode = r.get("iodef.schema_mode", "strict")
    if schema_mode not in ("strict", "warn"):
        raise r.error("iodef.schema_mode", "must be 'strict' or 'warn'")
    max_bytes = r.get("limits.max_document_bytes", DEFAULT_MAX_BYTES, int)
    if not 1024 <= max_bytes <= 480_000:
        raise r.error("limits.max_document_bytes",
                      "must be between 1024 and 480000 (Prosody closes component streams near 512 KB)")

    declared = r.get("signing.domains", None, (list, str))
    if declared == "*" or isinstance(declared, list) and "*" in declared:
        # Peers bind domains to a signer in trust.domains, which has no "*" either.
        raise r.error("signing.domains", 'cannot be "*": name the IncidentID domains this member publishes '
                                         "for, as the peers bind them to its certificate in trust.domains")
    signing_domains = () if declared is None else domain_list(r, "signing.domains", declared, allow_any=False)
    own = registry.get(registry.own) if registry.own else None
    if own is not None:  # our registry entry says what we speak for, as the peers read it
        signing_domains = tuple(dict.fromkeys((*signing_domains, *own.domains)))

    approval = r.get("pubsub.approval", "auto")
    if approval not in APPROVAL_MODES:
        raise r.error("pubsub.approval", "must be 'auto' (authorize subscriptions where the pubsub service "
                                         "supports it, e.g. ejabberd) or 'off' (whitelist only)")

    spool = r.get("spool.dir", None)
    trust_store = with_members(read_trust(r), registry)
    if subscriptions and not trust_store.certificates and not trust_store.authorities:
        raise r.error("trust.anchors", "subscriptions need at least one trust anchor, a consortium CA "
                                       "(trust.ca) or a members: registry to verify items")
    return Config(
        file=file,
        jid=jid,
        secret=secret,
        servers=_servers(r),
        pubsub_service=r.get("pubsub.service"),
        node_prefix=r.get("pubsub.node_prefix", "iodef").strip("/"),
        signing_key=signing_key,
        signing_cert=signing_cert,
        signing_domains=signing_domains,
        trust_anchors=trust,
        subscriptions=tuple(subscriptions),
        store_path=r.path("store.path", r.get("store.path", "xmppbridge.sqlite"), must_exist=False),
        store_url=_store_url(r),
        feed=feed,
        max_document_bytes=max_bytes,
        schema_mode=schema_mode,
        discovery_interval=_seconds(r, "pubsub.discovery_interval", 60),
        check_interval=_seconds(r, "pubsub.check_interval", 60),
        check_pause=_check_pause(r),
        reconcile_interval=_seconds(r, "pubsub.reconcile_interval", 300),
        trust=trust_store,
        operators=operator_settings(r, member_rights),
        spool_dir=None if spool is None else r.path("spool.dir", spool, must_exist=False),
        spool_interval=_seconds(r, "spool.interval", 2),
        registry=registry,
        audiences=audiences,
        approval=approval,
        instance_name=_instance_name(r),
        relay=relay,
    )


def _servers(r: ConfigReader) -> tuple[ServerAddress, ...]:
    """``component.server: {host, port}``, or ``component.servers``: a list of ``host:port`` (or of
    ``{host, port}``), every node of a clustered server (README.md, "ejabberd cluster")."""
    listed = r.get("component.servers", None, list)
    if listed is None:
        port = r.get("component.server.port", 5347, int)
        if not 0 < port < 65536:
            raise r.error("component.server.port", "must be a TCP port number")
        return (ServerAddress(r.get("component.server.host", "127.0.0.1"), port),)
    if r.get("component.server", None, dict) is not None:
        raise r.error("component.servers", "give component.server (one server) or component.servers "
                                           "(several), not both")
    if not listed:
        raise r.error("component.servers", "must list at least one server, as host:port")
    servers = []
    for i, item in enumerate(listed):
        key = f"component.servers[{i}]"
        if isinstance(item, dict) and isinstance(item.get("host"), str):
            text = f"{item['host']}:{item.get('port', 5347)}"
        elif isinstance(item, str):
            text = item
        else:
            raise r.error(key, f"must be host:port (a string) or a mapping with host and port, got {item!r}")
        try:
            address = parse_address(text)
        except ValueError as exc:
            raise r.error(key, f"{exc} in {text!r} (write host:port, e.g. xmpp1.a.test:5347)") from None
        if address in servers:
            raise r.error(key, f"{address} is listed twice")
        servers.append(address)
    return tuple(servers)


def _instance_name(r: ConfigReader) -> str:
    name = r.get("instance.name", None)
    if name is None:
        return default_instance_name()
    problem = valid_instance_name(name)
    if problem:
        raise r.error("instance.name", f"{problem} (it names this instance in status, logs and metrics)")
    return name


def _override(file: Path, data: dict[str, Any], key: str, value: object) -> None:
    *sections, name = key.split(".")
    for section in sections:
        if data.get(section) is None:
            data[section] = {}
        data = data[section]
        if not isinstance(data, dict):
            raise ConfigError(str(file), key, f"cannot be set: {section} is not a mapping")
    data[name] = value


def _store_url(r: ConfigReader) -> str | None:
    url = r.get("store.url", None)
    if url is None:
        return None
    if r.get("store.path", None) is not None:
        raise r.error("store.url", "give store.path (SQLite) or store.url (PostgreSQL), not both")
    if not url.startswith(("postgresql://", "postgres://")):
        raise r.error("store.url", "must be a PostgreSQL URL such as postgresql://xmppbridge@db.a.test:5432/"
                                   "xmppbridge (use store.path for an SQLite file)")
    return url


def _own_certificate(path: Path) -> x509.Certificate | None:
    try:
        return load_certificates(path, "signing.cert")[0]
    except ConfigError:
        return None  # load_identity reports it when the bridge starts


def _followed(r: ConfigReader, registry: Registry, listed: list[Subscription]) -> list[Subscription]:
    """``subscriptions:`` plus every peer of the registry we follow; one service, one subscription."""
    seen = {s.service for s in listed}
    for member in registry.peers():
        if not member.follow:
            continue
        if member.pubsub in seen:
            raise r.error("subscriptions", f"{member.pubsub} is member {member.name}'s service; remove the "
                                           "subscription (the registry entry subscribes to it)")
        listed.append(Subscription(member.pubsub, member.nodes, member.max_items))
    return listed


def _check_pause(r: ConfigReader) -> float:
    """How many times its answer time a periodic listing waits before the same peer is listed again."""
    value = float(r.get("pubsub.check_pause", LISTING_PAUSE, (int, float)))
    if not 0 <= value <= 10_000:
        raise r.error("pubsub.check_pause", "must be between 0 (list every round) and 10000 (100 is a "
                      "bridge's checks taking at most 1 % of a peer's time)")
    return value


def _seconds(r: ConfigReader, key: str, default: float) -> float:
    """An interval: a positive number of seconds (0 would make its loop spin)."""
    value = float(r.get(key, default, (int, float)))
    if not value > 0:
        raise r.error(key, "must be a positive number of seconds")
    return value
