"""One policy: for random registries and rights, the feed, chat and the node audiences agree on every
(actor, category) decision; and the config and policy code has no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppbridge.config.settings import load_config
from xmppbridge.feed.access import User
from xmppbridge.feed.settings import FeedSettings, feed_policy
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS
from xmppbridge.policy.may import Action, Actor, Policy
from xmppbridge.policy.nodes import node_name
from xmppbridge.policy.rights import Rights
from xmppbridge.signing.keys import generate_identity_files

PEERS = ("b", "c", "d")
CATEGORIES = [(r, p) for r in RESTRICTIONS for p in PURPOSES]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    for name in ("a", *PEERS):
        generate_identity_files(f"CSIRT {name}", directory / f"{name}.key", directory / f"{name}.crt",
                                domains=(f"{name}.test",))
    return directory


audience_keys = st.sampled_from([r for r in RESTRICTIONS if r != "public"]
                                + [f"{r}/{p}" for r in RESTRICTIONS if r != "public" for p in PURPOSES])
audience_values = st.one_of(st.just("all"), st.lists(st.sampled_from(PEERS), unique=True))
grants = st.lists(st.sampled_from(["public", "partner", "need-to-know/watch", "private", "*/mitigation"]),
                  max_size=2, unique=True)


@given(audiences=st.dictionaries(audience_keys, audience_values, max_size=6),
       extra=st.dictionaries(st.sampled_from(PEERS), grants))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_feed_chat_and_nodes_agree(keys: Path, audiences: dict, extra: dict) -> None:
    members = [{"name": n, "bridge": f"bridge.{n}.test", "pubsub": f"pubsub.{n}.test",
                "domains": [f"{n}.test"], "certificate": f"{n}.crt"} for n in ("a", *PEERS)]
    # For every peer: a feed user and a chat reader granted member:<peer> (and maybe more), and one
    # granted only member:<peer>, whose rights must be exactly the peer bridge's.
    users = {f"as-{n}": {"token_hash": "sha256$" + "0" * 64, "read": [f"member:{n}"]} for n in PEERS}
    users |= {f"more-{n}": {"token_hash": "sha256$" + "1" * 64, "read": [f"member:{n}", *extra.get(n, [])]}
              for n in PEERS}
    readers: dict[str, list[str]] = {}
    for n in PEERS:
        readers.setdefault(f"member:{n}", []).append(f"analyst@{n}.test")
    data = {"component": {"jid": "bridge.a.test", "secret": "s"}, "pubsub": {"service": "pubsub.a.test"},
            "signing": {"key": "a.key", "cert": "a.crt"}, "members": members, "audiences": audiences,
            "feed": {"listen": "127.0.0.1:8080", "users": users}, "chat": {"readers": readers}}
    file = keys / "bridge.yaml"
    file.write_text(yaml.safe_dump(data))
    config = load_config(file)
    policy = config.policy
    for n in PEERS:
        for category in CATEGORIES:
            audience = config.node_audience(node_name(config.node_prefix, *category))
            at_node = audience.open or f"bridge.{n}.test" in audience.bridges
            as_member = policy.may(Actor.member(n), Action.READ, category)
            feed = policy.may(Actor.user(f"as-{n}"), Action.READ, category)
            chat = policy.may(Actor.jid(f"Analyst@{n}.test/phone"), Action.READ, category)
            assert at_node == as_member == feed == chat, (n, category)
            # More grants only widen; write is never granted by a member: grant.
            assert policy.may(Actor.user(f"more-{n}"), Action.READ, category) >= feed
            assert not policy.may(Actor.user(f"as-{n}"), Action.WRITE, category)
        assert not policy.may(Actor.jid(f"analyst@{n}.test"), Action.OPERATE)


def test_a_person_on_a_member_domain_holds_only_what_is_named() -> None:
    policy = Policy(chat={"*@b.test": Rights.parse(["partner"])}, admins=frozenset({"ops@a.test"}))
    assert policy.rights(Actor.jid("x@b.test")).restrictions() == {"public", "partner"}
    assert policy.rights(Actor.jid("x@c.test")).restrictions() == {"public"}
    assert policy.may(Actor.jid("OPS@a.test/laptop"), Action.OPERATE)
    assert not policy.may(Actor.jid("x@b.test"), Action.OPERATE)
    assert not policy.may(Actor.room("r@rooms.a.test"), Action.READ, ("public", "watch"))


def test_feed_users_read_what_they_may_write_and_what_anonymous_readers_may() -> None:
    feed = FeedSettings(base_url="http://f/", anonymous_restrictions={"public"},
                        users=(User("w", read=Rights.parse(["partner"]), write=Rights.parse(["partner"])),))
    policy = feed_policy(feed)
    assert policy.rights(Actor.user("w")).restrictions() == {"public", "partner"}
    assert policy.rights(Actor.user(None)).restrictions() == {"public"}
    assert policy.rights(Actor.user("w"), Action.WRITE).restrictions() == {"partner"}


def test_member_grants_name_registry_members() -> None:
    with pytest.raises(ValueError, match="not a member"):
        Rights.parse(["member:zz"], {"b": Rights()})
    with pytest.raises(ValueError, match="reading only"):
        Rights.parse(["member:b"])


# -- no import circle ---------------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1] / "xmppbridge"


def imports() -> dict[str, set[str]]:
    """Module -> the xmppbridge modules it imports, TYPE_CHECKING imports included (a circle of them is a
    circle of concepts even when Python survives it)."""
    modules = {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"):
               path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                found |= {n for n in names if n in modules} or ({node.module} & modules.keys())
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names} & modules.keys()
        graph[module] = found - {module}
    return graph


def circles(graph: dict[str, set[str]], within: tuple[str, ...]) -> list[list[str]]:
    """Import cycles among the modules whose names start with one of ``within``."""
    nodes = {m for m in graph if m.startswith(within)}
    found, state, stack = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module] & nodes):
            if state.get(target) == "open":
                found.append([*stack[stack.index(target):], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(nodes):
        if module not in state:
            visit(module)
    return found


CONFIG_AND_POLICY = ("xmppbridge.config.settings", "xmppbridge.configfile", "xmppbridge.policy",
                     "xmppbridge.feed.settings", "xmppbridge.feed.access", "xmppbridge.chat.settings",
                     "xmppbridge.signing.trustconfig", "xmppbridge.signing.trust")


def test_no_import_circle_in_the_config_and_policy_code() -> None:
    graph = imports()
    # Everything the config and policy modules reach, so a circle through any module they import counts.
    reach, todo = set(), [m for m in graph if m.startswith(CONFIG_AND_POLICY)]
    while todo:
        module = todo.pop()
        if module not in reach:
            reach.add(module)
            todo.extend(graph[module])
    assert circles({m: graph[m] & reach for m in reach}, tuple(reach)) == []


def test_the_circle_check_finds_a_circle() -> None:
    graph = {"x.a": {"x.b"}, "x.b": {"x.c"}, "x.c": {"x.a"}, "x.d": set()}
    assert circles(graph, ("x.",)) == [["x.a", "x.b", "x.c", "x.a"]]
