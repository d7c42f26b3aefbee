"""The chat core without a network: commands, rights, summaries, subscriptions, rate limits, rooms."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from xmppbridge.chat import service as chat_service
from xmppbridge.chat.commands import CommandError, parse
from xmppbridge.chat.ratelimit import RateLimiter
from xmppbridge.chat.service import SUMMARIES_PER_ROUND, ChatService, describe
from xmppbridge.chat.settings import OperatorSettings, RateLimit, chat_policy, operator_settings
from xmppbridge.chat.summary import indicators, summary
from xmppbridge.configfile import ConfigReader
from xmppbridge.errors import ConfigError
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.model import Incident
from xmppbridge.policy.may import Actor
from xmppbridge.policy.rights import Rights
from xmppbridge.store import Store
from xmppbridge.store.chatstate import ChatState
from xmppbridge.store.entries import Entry
from xmppbridge.store.items import SignedItem, Signer

ANALYST, STRANGER, PARTNER = "analyst@b.test", "guest@b.test", "peer@c.test"


def document(incident_id: str, restriction: str, purpose: str, title: str) -> bytes:
    return f"""<IODEF-Document version="2.00" xmlns="urn:ietf:params:xml:ns:iodef-2.0">
  <Incident purpose="{purpose}" restriction="{restriction}">
    <IncidentID name="csirt.a.test">{incident_id}</IncidentID>
    <GenerationTime>2026-11-20T08:30:00Z</GenerationTime>
    <Description>{title}</Description>
    <EventData><Flow><System category="source"><Node>
      <DomainData><Name>c2.example.net</Name></DomainData>
      <Address category="ipv4-addr">192.0.2.10</Address>
    </Node></System></Flow></EventData>
  </Incident>
</IODEF-Document>""".encode()


def add(store: Store, incident_id: str, restriction: str = "public", purpose: str = "mitigation",
        title: str = "Botnet C2", item: str | None = None) -> None:
    incident = Incident(id_name="csirt.a.test", id=incident_id, instance=None, restriction_raw=restriction,
                        restriction=restriction, purpose=purpose, title=title,
                        generation_time=datetime(2026, 11, 20, 8, 30, tzinfo=UTC))
    store.upsert_entry(
        "pubsub.a.test",
        SignedItem(
            f"iodef/{restriction}/{purpose}",
            item or incident_id,
            document(incident_id, restriction, purpose, title),
            incident,
            "2.0",
            Signer("CN=CSIRT A signing key,O=A", "ab" * 32),
        ),
        origin="remote",
    )


def settings(**changes: object) -> OperatorSettings:
    readers = {ANALYST: Rights.parse(["all"]), "*@c.test": Rights.parse(["partner"])}
    return OperatorSettings(**{"readers": readers, **changes})  # type: ignore[arg-type]


def service(settings: OperatorSettings, store: Store, state: ChatState, urls: FeedUrls) -> ChatService:
    return ChatService(settings, chat_policy(settings), store, state, urls)


@pytest.fixture
def store(store_target: str) -> Iterator[Store]:
    with Store(store_target) as store:
        yield store


@pytest.fixture
def state(store: Store) -> ChatState:
    return store.chat


@pytest.fixture
def chat(store: Store, state: ChatState) -> ChatService:
    return service(settings(), store, state, FeedUrls("http://feed.test/"))


def test_parse_commands() -> None:
    assert parse("latest").count == 5 and parse("LATEST 3").count == 3
    assert parse("show INC-1").argument == "INC-1"
    assert parse("  subscribe   need-to-know/mitigation ").argument == "need-to-know/mitigation"
    for bad in ("", "latest 0", "latest x", "show", "frobnicate", "help me"):
        with pytest.raises(CommandError):
            parse(bad)


def test_help_says_what_one_may_see(chat: ChatService) -> None:
    assert "subscribe <category>" in chat.handle(ANALYST, "help")
    assert chat.handle(STRANGER, "help").endswith("You may see: public.")
    assert "You may see: public, partner." in chat.handle(PARTNER + "/phone", "help")


def test_stranger_sees_only_public_items(chat: ChatService, store: Store) -> None:
    add(store, "PUB-1", "public", title="Phishing wave")
    add(store, "NTK-1", "need-to-know", title="Secret botnet")
    assert "NTK-1" in chat.handle(ANALYST, "latest") and "PUB-1" in chat.handle(ANALYST, "latest")
    latest = chat.handle(STRANGER, "latest")
    assert "PUB-1" in latest and "NTK-1" not in latest
    # Same answer as for an unknown incident: no oracle for what exists.
    assert chat.handle(STRANGER, "show NTK-1") == "No incident NTK-1 that you may see."
    assert chat.handle(STRANGER, "show #2") == "No incident #2 that you may see."
    assert "Secret" not in chat.handle(STRANGER, "search botnet")
    assert "You may not see need-to-know" in chat.handle(STRANGER, "subscribe need-to-know/mitigation")


def test_show_summarises_with_hosts_and_feed_link(chat: ChatService, store: Store) -> None:
    add(store, "NTK-1", "need-to-know", title="Secret botnet")
    shown = chat.handle(ANALYST, "show NTK-1")
    assert shown.startswith("[need-to-know/mitigation] Secret botnet")
    assert ("Incident csirt.a.test:NTK-1 (#1), reported by csirt.a.test (signed by CSIRT A signing key)"
            in shown)
    assert "Hosts: c2.example.net, 192.0.2.10" in shown
    assert "Feed: http://feed.test/entries/1" in shown
    assert "reported 2026-11-20 08:30 UTC" in shown
    assert chat.handle(ANALYST, "show #1") == shown


def test_search_finds_description_words(chat: ChatService, store: Store) -> None:
    add(store, "PUB-1", title="Phishing wave against webmail")
    add(store, "PUB-2", title="Scanning of SSH")
    found = chat.handle(STRANGER, "search phishing webmail")
    assert "PUB-1" in found and "PUB-2" not in found
    assert chat.handle(STRANGER, "search nothing-like-this") == (
        "Nothing that you may see matches 'nothing-like-this'.")


def test_subscriptions_persist_and_are_limited_to_rights(store: Store, state: ChatState) -> None:
    chat = service(settings(), store, state, FeedUrls("http://feed.test/"))
    reply = chat.handle(PARTNER, "subscribe all")
    # "all" minus what they may not see
    assert reply.startswith("Subscribed to public, partner (not need-to-know, private, default, which you")
    assert chat.handle(ANALYST, "subscribe need-to-know/mitigation").startswith(
        "Subscribed to need-to-know/mitigation.")
    with Store(store.path) as again:  # a restart
        assert again.chat.subscriptions(ANALYST) == {("need-to-know", "mitigation")}
    assert chat.handle(ANALYST, "subscriptions") == "Subscribed to: need-to-know/mitigation."
    assert chat.handle(ANALYST, "unsubscribe all") == (
        "Unsubscribed from 1 category. Still subscribed to: nothing.")
    assert chat.handle(ANALYST, "subscribe bogus/x").startswith("Cannot subscribe: 'bogus/x' is not")


def test_notices_go_to_subscribers_who_may_see_them(chat: ChatService, store: Store,
                                                    state: ChatState) -> None:
    assert chat.changes() == []  # a fresh cursor starts at the end of the log
    chat.handle(ANALYST, "subscribe need-to-know")
    state.subscribe(STRANGER, [("need-to-know", "mitigation")])  # e.g. rights shrank after subscribing
    add(store, "NTK-1", "need-to-know", title="Secret botnet")
    changes = chat.changes()
    assert [(e.incident.id, status) for e, status in changes] == [("NTK-1", "new")]
    [notice] = chat.notices(changes)
    assert notice.to == ANALYST and not notice.room
    assert notice.body.startswith("New [need-to-know/mitigation] Secret botnet")
    assert chat.changes() == []
    add(store, "NTK-1", "need-to-know", title="Secret botnet, now with more hosts")
    [(entry, status)] = chat.changes()
    assert status == "updated"
    assert chat.notices([(entry, status)])[0].body.startswith("Updated (revision 2) [need-to-know/")
    state.set_paused(ANALYST, True)
    assert chat.notices([(entry, status)]) == []


def test_cursor_survives_restart(store: Store, state: ChatState) -> None:
    urls = FeedUrls("http://feed.test/")
    service(settings(), store, state, urls).changes()
    add(store, "PUB-1")
    with Store(store.path) as restarted:
        later = service(settings(), restarted, restarted.chat, urls)
        assert [e.incident.id for e, _ in later.changes()] == ["PUB-1"]


def test_a_burst_is_summarised_per_recipient(chat: ChatService, store: Store) -> None:
    chat.changes()
    chat.handle(STRANGER, "subscribe public")
    for n in range(SUMMARIES_PER_ROUND + 3):
        add(store, f"PUB-{n}")
    notices = chat.notices(chat.changes())
    assert len(notices) == SUMMARIES_PER_ROUND + 1
    assert notices[-1].body.startswith("... and 3 more new or updated incidents: http://feed.test/")


def test_a_burst_reads_only_the_documents_it_summarises(chat: ChatService, store: Store,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []

    def counting(entry: Entry, **kwargs: object) -> str:
        written.append(entry.incident.id)
        return summary(entry, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(chat_service, "summary", counting)
    chat.changes()
    chat.handle(STRANGER, "subscribe public")
    for n in range(SUMMARIES_PER_ROUND + 40):
        add(store, f"PUB-{n}")
    notices = chat.notices(chat.changes())
    assert written == [f"PUB-{n}" for n in range(SUMMARIES_PER_ROUND)]  # not one per entry of the burst
    assert notices[-1].body.startswith("... and 40 more new or updated incidents")


def test_rooms_get_only_what_their_config_allows(tmp_path: Path, store: Store, state: ChatState) -> None:
    config = tmp_path / "bridge.yaml"
    data = {"rooms": [{"room": "soc@rooms.a.test", "post": ["all"]},
                      {"room": "ntk@rooms.a.test", "post": ["need-to-know/mitigation"],
                       "allow": ["need-to-know"]}]}
    chat = service(operator_settings(ConfigReader(config, data)), store, state, FeedUrls("http://f.test/"))
    chat.changes()
    add(store, "PUB-1", "public")
    add(store, "NTK-1", "need-to-know")
    add(store, "PRV-1", "private")
    posted = sorted((n.to, n.body.split("\n")[1].split()[1]) for n in chat.notices(chat.changes()) if n.room)
    # "post: [all]" alone never lets restricted summaries in; private goes nowhere.
    assert posted == [("ntk@rooms.a.test", "csirt.a.test:NTK-1"), ("soc@rooms.a.test", "csirt.a.test:PUB-1")]


def test_room_naming_a_restriction_it_does_not_allow_is_a_config_error(tmp_path: Path) -> None:
    data = {"rooms": [{"room": "soc@rooms.a.test", "post": ["private"]}]}
    with pytest.raises(ConfigError, match=r"rooms\[0\].post: names private"):
        operator_settings(ConfigReader(tmp_path / "b.yaml", data))


def test_config_sections(tmp_path: Path) -> None:
    text = """
chat:
  readers:
    all: [Analyst@A.test]
    need-to-know/mitigation: ["*@b.test"]
  rate_limit: {burst: 3, per_minute: 6}
admins: [ops@a.test]
logging: {format: json}
"""
    parsed = operator_settings(ConfigReader(tmp_path / "b.yaml", yaml.safe_load(text)))
    assert chat_policy(parsed).rights(Actor.jid("analyst@a.test/laptop")).allows("private", "watch")
    assert chat_policy(parsed).rights(Actor.jid("x@b.test")).allows("need-to-know", "mitigation")
    assert not chat_policy(parsed).rights(Actor.jid("x@b.test")).allows("need-to-know", "watch")
    assert parsed.rate == RateLimit(3, 6.0) and parsed.admins == {"ops@a.test"}
    assert parsed.log_format == "json" and parsed.metrics
    for bad, key in (({"chat": {"readers": {"secret": ["a@b"]}}}, "chat.readers.secret"),
                     ({"chat": {"readers": {"all": ["nojid"]}}}, "chat.readers.all"),
                     ({"admins": ["a@b/res"]}, "admins"), ({"logging": {"format": "xml"}}, "logging.format")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            operator_settings(ConfigReader(tmp_path / "b.yaml", bad))


def test_rate_limit_warns_once_then_drops() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(burst=2, per_minute=60), clock=lambda: now[0])
    assert [limiter.check("x@y") for _ in range(4)] == ["ok", "ok", "warn", "drop"]
    assert limiter.check("other@y") == "ok"
    now[0] += 1.0
    assert limiter.check("x@y") == "ok"


def test_rate_limited_chat(store: Store, state: ChatState) -> None:
    chat = service(settings(rate=RateLimit(burst=1, per_minute=1)), store, state, FeedUrls("http://f/"))
    assert chat.handle(STRANGER, "help") is not None
    assert chat.handle(STRANGER, "help").startswith("Slow down")
    assert chat.handle(STRANGER, "help") is None


def test_long_text_is_not_a_command(chat: ChatService) -> None:
    assert chat.handle(STRANGER, "show " + "x" * 2000).startswith("That is too long to be a command.")


def test_indicators_of_iodef1_and_garbage() -> None:
    v1 = b"""<IODEF-Document version="1.00" xmlns="urn:ietf:params:xml:ns:iodef-1.0">
      <Incident purpose="other">
      <EventData><Flow><System><Node><NodeName>host.example</NodeName><Address>192.0.2.1</Address>
      <Address>192.0.2.1</Address></Node></System></Flow></EventData></Incident></IODEF-Document>"""
    assert indicators(v1) == (["host.example", "192.0.2.1"], 2)
    assert indicators(b"<not-xml") == ([], 0)
    assert indicators(v1, limit=1) == (["host.example"], 2)


def test_describe() -> None:
    assert describe(Rights.parse(["public", "need-to-know/watch"]).pairs) == "public, need-to-know/watch"
    assert describe(set()) == "nothing"


def test_example_config_sections_parse() -> None:
    example = Path(__file__).resolve().parents[1] / "deploy" / "example" / "bridge.yaml"
    parsed = operator_settings(ConfigReader(example, yaml.safe_load(example.read_text())))
    assert chat_policy(parsed).rights(Actor.jid("someone@csirt-a.example")).allows("need-to-know", "watch")
    assert [room.room for room in parsed.rooms] == ["incidents@rooms.csirt-a.example"]
    assert parsed.admins == {"duty@csirt-a.example"} and parsed.log_format == "json"
