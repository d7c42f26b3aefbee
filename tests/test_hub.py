"""Hub and spoke without servers: the relay: section's checks, which items a coordinator relays (and
which it refuses, kept in the quarantine), idempotence, and how the custody chain is shown."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from xml.etree import ElementTree as ET

import pytest
from lxml import etree

from tests.hostile_corpus import iodef2
from tests.test_members import error, load, member
from tests.test_mirror import ScriptedNode
from xmppbridge.chat.summary import summary
from xmppbridge.config.settings import Config
from xmppbridge.feed import atom, html
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.ops.quarantine import release
from xmppbridge.paths.custody import member_names
from xmppbridge.paths.hub import Hub, OwnEcho
from xmppbridge.paths.relay import RELAY_SOURCE, Relayer, Route, prepare_relay
from xmppbridge.policy.relaying import RelayRule
from xmppbridge.policy.sources import Sources
from xmppbridge.signing.keys import SigningIdentity, load_identity
from xmppbridge.signing.relay import relay_sign
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import TrustStore
from xmppbridge.signing.verify import verify_document
from xmppbridge.store import Store
from xmppbridge.store.items import ItemRef
from xmppbridge.xmpp.mirror import Mirror


@pytest.fixture
def hub_config(tmp_path: Path) -> dict:
    """Hub h of spokes a, b and c; b alone reads its need-to-know nodes."""
    return {
        "component": {"jid": "bridge.h.test", "secret": "s"},
        "pubsub": {"service": "pubsub.h.test"},
        "signing": {"key": "h.key", "cert": "h.crt"},
        "members": [member(tmp_path, name) for name in ("h", "a", "b", "c")],
        "audiences": {"partner": "all", "need-to-know": ["b"]},
        "relay": [{"from": ["a"], "restrictions": ["public", "partner"], "to": "all"},
                  {"from": ["a"], "restrictions": ["need-to-know"], "to": ["b"]}],
        "store": {"path": "h.sqlite"},
        "feed": {"listen": "127.0.0.1:8080"},
    }


def identity(tmp_path: Path, name: str) -> SigningIdentity:
    return load_identity(tmp_path / f"{name}.key", tmp_path / f"{name}.crt")


# -- the relay: section -----------------------------------------------------------------------------------


def test_the_relay_section_becomes_rules(tmp_path: Path, hub_config: dict) -> None:
    config = load(tmp_path, hub_config)
    first, second = config.relay.rules
    assert first.sources == {"pubsub.a.test"} and first.restrictions == {"public", "partner"}
    assert first.to == {"a", "b", "c"} and second.to_bridges == {"bridge.b.test"}
    assert second.nodes is None and second.purposes is None


@pytest.mark.parametrize(("rule", "key", "says"), [
    ({"restrictions": ["private"], "to": "all"}, "relay[0].restrictions", "never relayed"),
    ({"restrictions": ["red"], "to": "all"}, "relay[0].restrictions", "never relayed"),
    ({"restrictions": ["secret"], "to": "all"}, "relay[0].restrictions", "not a restriction"),
    ({"nodes": ["iodef/private/mitigation"], "to": "all"}, "relay[0].nodes", "never relayed"),
    ({"from": ["z"], "to": "all"}, "relay[0].from", "z is not a peer"),
    ({"from": ["h"], "to": "all"}, "relay[0].from", "our own entry does not count"),
    ({"purposes": ["gossip"], "to": "all"}, "relay[0].purposes", "not a purpose"),
    ({"restrictions": ["partner"]}, "relay[0].to", "is required"),
    ({"restrictions": ["partner"], "to": ["b"]}, "relay[0].to", "partner/mitigation is read by a, c"),
    ({"restrictions": ["need-to-know"], "to": ["c"]}, "relay[0].to", "need-to-know/other is read by b"),
    ({"to": "all", "via": "x"}, "relay[0]", "unknown key 'via'"),
])
def test_a_relay_rule_that_would_leak_is_refused_with_what_to_do(tmp_path: Path, hub_config: dict,
                                                                 rule: dict, key: str, says: str) -> None:
    hub_config["relay"] = [rule]
    message = error(tmp_path, hub_config)
    assert f": {key}: " in message and says in message


def test_a_hub_relays_only_members_it_follows(tmp_path: Path, hub_config: dict) -> None:
    hub_config["members"][1]["follow"] = False
    assert "follow: false" in error(tmp_path, hub_config)


def test_relaying_needs_the_registry(tmp_path: Path, hub_config: dict) -> None:
    del hub_config["members"], hub_config["audiences"]
    hub_config["trust"] = {"anchors": ["a.crt"]}
    assert ": relay: names members" in error(tmp_path, hub_config)


def test_rule_selection() -> None:
    rule = RelayRule(frozenset({"pubsub.a.test"}), None, frozenset({"partner"}), frozenset({"mitigation"}),
                     frozenset({"b"}))
    assert rule.selects("pubsub.a.test", "iodef/partner/mitigation", "green", "mitigation")
    assert not rule.selects("pubsub.b.test", "iodef/partner/mitigation", "partner", "mitigation")
    assert not rule.selects("pubsub.a.test", "iodef/partner/watch", "partner", "watch")
    assert not rule.selects("pubsub.a.test", "iodef/need-to-know/mitigation", "need-to-know", "mitigation")
    # A private item of a relayed member is selected, so that its refusal is kept, not passed over.
    assert rule.selects("pubsub.a.test", "iodef/private/mitigation", "private", "mitigation")


# -- the hub's mirror --------------------------------------------------------------------------------------


class Coordinator:
    def __init__(self, tmp_path: Path, config: dict) -> None:
        self.config = load(tmp_path, config)
        self.store = Store(tmp_path / "h.sqlite")
        self.hub = Hub(self.config, self.store, identity(tmp_path, "h"))
        self.mirror = Mirror(self.config, self.store, self.config.trust, relay=self.hub.relay,
                             retract_relayed=self.hub.retract, member_of=member_names(self.config.registry))
        self.a = identity(tmp_path, "a")

    def receive(self, incident_id: str, restriction: str, *, xml: bytes | None = None) -> bytes:
        signed = xml or sign_document(etree.fromstring(iodef2(incident_id, name="csirt.a.test",
                                                              restriction=restriction)), self.a)
        with self.store.batch():
            self.mirror.on_item("pubsub.a.test", f"iodef/{restriction}/mitigation", f"item-{incident_id}",
                                ET.fromstring(signed))
        return signed


@pytest.fixture
def coordinator(tmp_path: Path, hub_config: dict) -> Iterator[Coordinator]:
    hub = Coordinator(tmp_path, hub_config)
    yield hub
    hub.store.close()


def test_the_hub_relays_what_a_rule_selects_once_with_its_custody(coordinator: Coordinator,
                                                                  tmp_path: Path) -> None:
    coordinator.receive("R-1", "partner")
    coordinator.receive("R-2", "need-to-know")
    coordinator.receive("R-1", "partner")  # a redelivery, or the catch-up after a restart: same bytes
    pending = coordinator.store.pending()
    assert [(p.node, p.item_id) for p in pending] == [("iodef/partner/mitigation", "csirt.a.test/R-1"),
                                                     ("iodef/need-to-know/mitigation", "csirt.a.test/R-2")]
    h = identity(tmp_path, "h")
    for item in pending:
        assert [(c.role, c.member) for c in item.custody] == [("originator", "a"), ("relay", "h")]
        assert item.custody[0].fingerprint == coordinator.a.fingerprint
        chain = verify_document(item.payload, TrustStore.from_certificates([coordinator.a.certificate,
                                                                            h.certificate])).chain
        assert [s.fingerprint for s in chain] == [coordinator.a.fingerprint, h.fingerprint]
    assert coordinator.store.count_rejects() == 0


def test_private_items_are_mirrored_and_never_relayed(coordinator: Coordinator) -> None:
    coordinator.receive("P-1", "private")
    assert coordinator.store.find_entry("pubsub.a.test", "iodef/private/mitigation", "item-P-1") is not None
    assert coordinator.store.pending() == []
    [reject] = coordinator.store.rejects()
    assert (reject.source, reject.reason, reject.item_id) == (RELAY_SOURCE, "relay-refused", "item-P-1")
    assert "never relayed" in reject.message


def test_a_relay_never_reaches_beyond_its_rule_even_when_the_audience_grows(coordinator: Coordinator) -> None:
    """The audiences are live (a reload swaps them in); the rule's ``to`` is checked again per item."""
    audiences = coordinator.config.audiences
    wider = dataclasses.replace(audiences, rules=MappingProxyType(
        {**audiences.rules, "need-to-know": frozenset({"b", "c"})}))
    coordinator.hub.config = dataclasses.replace(coordinator.config, audiences=wider)
    coordinator.receive("N-1", "need-to-know")
    assert coordinator.store.pending() == []
    [reject] = coordinator.store.rejects()
    assert reject.reason == "relay-refused" and "bridge.c.test would read it" in reject.message


def test_partner_items_too_reach_no_one_outside_the_rule(tmp_path: Path, hub_config: dict) -> None:
    hub_config["audiences"] = {"partner": ["b"], "need-to-know": ["b"]}
    hub_config["relay"] = [{"from": ["a"], "restrictions": ["partner"], "to": ["b"]}]
    coordinator = Coordinator(tmp_path, hub_config)
    with coordinator.store:
        audiences = coordinator.config.audiences
        wider = dataclasses.replace(audiences, rules=MappingProxyType({**audiences.rules,
                                                                       "partner": frozenset("bc")}))
        coordinator.hub.config = dataclasses.replace(coordinator.config, audiences=wider)  # a reload, say
        coordinator.receive("R-6", "partner")
        assert coordinator.store.pending() == []
        [reject] = coordinator.store.rejects()
        assert reject.reason == "relay-refused" and "bridge.c.test would read it" in reject.message


def test_what_is_not_selected_stays_unrelayed_and_unremarked(tmp_path: Path, hub_config: dict) -> None:
    hub_config["relay"] = [{"from": ["a"], "restrictions": ["public"], "to": "all"}]
    coordinator = Coordinator(tmp_path, hub_config)
    with coordinator.store:
        coordinator.receive("R-3", "partner")
        assert coordinator.store.pending() == [] and coordinator.store.count_rejects() == 0


def test_the_relayed_entry_shows_its_custody_in_feed_html_and_chat(coordinator: Coordinator) -> None:
    coordinator.receive("R-4", "partner")
    [item] = coordinator.store.pending()
    coordinator.store.mark_published(item.id, service="pubsub.h.test")
    entry = coordinator.store.find_entry("pubsub.h.test", item.node, item.item_id)
    assert entry is not None and entry.signer_subject == "CN=CSIRT a"  # the originator
    values = [value for name, value in atom.properties(entry) if name == atom.PROPERTY_CUSTODY]
    assert len(values) == 2
    assert values[0].startswith("originator CN=CSIRT a (member a; SHA-256 ")
    assert values[0].endswith(" at 2026-11-20T08:30:00Z")  # the time a's document states
    assert values[1].startswith("relay CN=CSIRT h (member h; SHA-256 ") and " at 20" in values[1]
    assert "relayed by CN=CSIRT h" in atom.entry_summary(entry)
    page = html.entry_page(entry, FeedUrls("http://feed.test/"), html.Viewer(None)).decode()
    assert "<th>Custody</th>" in page and "<li>originator CN=CSIRT a" in page
    text = summary(entry, status="new", link="http://feed.test/e/1")
    assert "Custody: a (originator, 2026-11-20 08:30 UTC) -> h (relay, " in text


def test_a_spoke_passes_over_its_own_items_relayed_back(tmp_path: Path, hub_config: dict) -> None:
    config = load(tmp_path, hub_config)
    a, b, h = (identity(tmp_path, n) for n in "abh")
    echo = OwnEcho(a)
    own = sign_document(etree.fromstring(iodef2("E-1")), a)
    relayed = prepare_relay_for(config, h, own)
    assert echo(own) and echo(relayed)
    assert not echo(sign_document(etree.fromstring(iodef2("E-2", name="csirt.b.test")), b))
    assert not echo(None) and not echo(b"<not-signed/>")


def test_a_hub_passes_over_its_own_relays_coming_back_from_another_hub(tmp_path: Path,
                                                                        hub_config: dict) -> None:
    """A tree of hubs: h relays a's item, hub b relays it on, and h, following b, gets it back."""
    config = load(tmp_path, hub_config)
    a, b, h = (identity(tmp_path, n) for n in "abh")
    through_h = prepare_relay_for(config, h, sign_document(etree.fromstring(iodef2("E-4")), a))
    through_h_and_b = relay_sign(through_h, b)
    assert OwnEcho(h)(through_h_and_b) and OwnEcho(h)(through_h)
    assert OwnEcho(b)(through_h_and_b) and not OwnEcho(b)(through_h)
    # An item of hub b's own, relayed by h, is an echo at both, and at nobody else.
    theirs = relay_sign(sign_document(etree.fromstring(iodef2("E-5", name="csirt.b.test")), b), h)
    assert OwnEcho(b)(theirs) and OwnEcho(h)(theirs) and not OwnEcho(a)(theirs)
    with Store(tmp_path / "h2.sqlite") as store:
        mirror = echo_mirror(store, "pubsub.b.test", h)
        mirror.on_item("pubsub.b.test", "iodef/need-to-know/mitigation", "csirt.a.test/E-4",
                       ET.fromstring(through_h_and_b))
        assert store.count_entries() == 0 and store.count_rejects() == 0  # passed over


def test_a_hub_relays_a_document_once_however_many_ways_it_comes(tmp_path: Path, hub_config: dict) -> None:
    """Hubs in a ring or a mesh: h follows hubs b and c (and a), each of which relays a's item on, so the
    same document comes by three ways, with three custody chains. h relays it once, the first time; an
    update is relayed once too, and the old document, brought late by a way that lags, is not relayed
    again over the update."""
    hub_config["relay"] = [{"from": ["a", "b", "c"], "restrictions": ["partner"], "to": "all"}]
    hub = Coordinator(tmp_path, hub_config)
    a, b, c = (identity(tmp_path, n) for n in "abc")
    first, update = (sign_document(etree.fromstring(iodef2("W-1", restriction="partner", description=t)), a)
                     for t in ("Botnet C2 seen at 192.0.2.10", "Botnet C2 seen at 192.0.2.10 and .11"))

    def comes(service: str, payload: bytes, item: str = "csirt.a.test/W-1") -> list[list[str]]:
        """``payload`` from ``service``; the custody chains of what h has queued to relay, in order."""
        with hub.store.batch():
            hub.mirror.on_item(service, "iodef/partner/mitigation", item, ET.fromstring(payload))
        return [[c.member for c in item.custody] for item in hub.store.pending()]

    with hub.store:
        assert comes("pubsub.b.test", relay_sign(first, b)) == [["a", "b", "h"]]
        assert comes("pubsub.c.test", relay_sign(first, c)) == [["a", "b", "h"]]  # mirrored, not relayed
        assert comes("pubsub.c.test", relay_sign(update, c)) == [["a", "b", "h"], ["a", "c", "h"]]
        assert comes("pubsub.b.test", relay_sign(update, b)) == [["a", "b", "h"], ["a", "c", "h"]]
        assert comes("pubsub.a.test", first) == [["a", "b", "h"], ["a", "c", "h"]]  # a's own way, lagging
        assert comes("pubsub.a.test", update) == [["a", "b", "h"], ["a", "c", "h"]]
        assert hub.store.count_entries() == 3 and hub.store.count_rejects() == 0  # each way's copy is kept
        # Another incident from the same originator is still relayed.
        other = sign_document(etree.fromstring(iodef2("W-2", restriction="partner")), a)
        assert len(comes("pubsub.c.test", relay_sign(other, c), "csirt.a.test/W-2")) == 3


def echo_mirror(store: Store, service: str, us: SigningIdentity) -> Mirror:
    """A mirror that follows ``service`` alone and recognises what ``us`` signed coming back."""
    return Mirror(SimpleNamespace(sources=Sources(frozenset({service}))), store, None,  # type: ignore[arg-type]
                  own_echo=OwnEcho(us))


def prepare_relay_for(config: Config, h: SigningIdentity, payload: bytes) -> bytes:
    item = prepare_relay(ItemRef("pubsub.a.test", "iodef/need-to-know/mitigation", "x"), payload,
                         Relayer(h, config.trust, "iodef", 100_000),
                         Route(config.node_audience, {"bridge.b.test"}))
    return item.xml


def test_a_retraction_by_the_originator_retracts_the_relayed_copy(coordinator: Coordinator) -> None:
    coordinator.receive("R-5", "partner")
    [item] = coordinator.store.pending()
    coordinator.store.mark_published(item.id, service="pubsub.h.test")
    coordinator.mirror.on_retract("pubsub.a.test", "iodef/partner/mitigation", "item-R-5")
    [retraction] = coordinator.store.pending()
    assert (retraction.action, retraction.node, retraction.item_id) == ("retract", item.node, item.item_id)
    coordinator.mirror.on_retract("pubsub.a.test", "iodef/partner/mitigation", "item-R-5")  # again: no-op
    assert len(coordinator.store.pending()) == 1


def test_a_relay_refusal_is_not_released_as_if_the_receive_path_had_refused_it(coordinator: Coordinator
                                                                               ) -> None:
    coordinator.receive("P-2", "private")
    [outcome] = release(coordinator.store, coordinator.config.trust, coordinator.store.rejects(),
                        max_bytes=100_000, follows=coordinator.config.sources.follows)
    assert not outcome.released and "relay policy" in outcome.outcome


async def test_a_spoke_does_not_fetch_its_own_echoes_again_at_every_check(tmp_path: Path,
                                                                          hub_config: dict) -> None:
    config = load(tmp_path, hub_config)
    a, h = identity(tmp_path, "a"), identity(tmp_path, "h")
    echo = prepare_relay_for(config, h, sign_document(etree.fromstring(iodef2("E-3")), a))
    with Store(tmp_path / "a.sqlite") as store:
        mirror = echo_mirror(store, "pubsub.h.test", a)
        mirror.on_item("pubsub.h.test", "iodef/need-to-know/mitigation", "csirt.a.test/E-3",
                       ET.fromstring(echo))
        assert store.count_entries() == 0 and store.count_rejects() == 0  # passed over
        remote = ScriptedNode(mirror, ["csirt.a.test/E-3"])
        for _ in range(3):
            await mirror.catch_up(remote, "pubsub.h.test", "iodef/need-to-know/mitigation",  # type: ignore[arg-type]
                                  remote_capacity=100, kind="check")
        assert remote.fetched == []
