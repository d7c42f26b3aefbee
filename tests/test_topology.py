"""The shape of a local consortium as data: names, server kinds, who follows whom, who may receive what."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmppbridge.config.settings import load_config
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.run import demo_addresses
from xmppbridge.demo.topology import (
    Shape,
    TopologyError,
    hub_and_spoke,
    may_receive,
    member_names,
    mesh,
    paths,
    server_kinds,
    topology,
    ways,
)
from xmppbridge.policy.audiences import Audiences, parse_audiences


def open_audiences(names: str) -> tuple[dict[str, str], dict[str, Audiences]]:
    """Each member's bridge JID, and audiences that let every other member read every category."""
    bridges = {n: f"bridge.{n}.test" for n in names}
    everyone = {"partner": "all", "need-to-know": "all", "private": "all"}
    return bridges, {n: parse_audiences(everyone, {m: j for m, j in bridges.items() if m != n})
                     for n in bridges}


def test_a_full_mesh_has_every_member_follow_every_other_over_one_link_per_pair() -> None:
    names = member_names(16)
    assert names[:3] == ["a", "b", "c"] and names[-1] == "p"
    shape = topology("mesh", names)
    assert shape.follows["a"] == frozenset(names[1:])
    assert shape.receivers_of("c") == frozenset(names) - {"c"}
    assert len(shape.links()) == 16 * 15 // 2


def test_unknown_shapes_and_sizes_are_refused_with_what_to_ask_instead() -> None:
    with pytest.raises(TopologyError, match="must be one of mesh, hub"):
        topology("star", ["a", "b"])
    with pytest.raises(TopologyError, match="between 2 and 26"):
        member_names(1)
    with pytest.raises(TopologyError, match="needs 3 members at least"):
        topology("hub", ["a", "b"])
    with pytest.raises(TopologyError, match="--hub 'x' is not a member; the members are a, b, c"):
        topology("hub", ["a", "b", "c"], "x")
    with pytest.raises(TopologyError, match="--topology mesh has none"):
        topology("mesh", ["a", "b", "c"], "a")
    with pytest.raises(TopologyError, match="--topology tree has the first 2 members as its hubs"):
        topology("tree", ["a", "b", "c", "d"], "a")
    with pytest.raises(TopologyError, match="needs 4 members at least"):
        topology("tree", ["a", "b", "c"])
    with pytest.raises(TopologyError, match="--topology ring needs 6 members at least"):
        topology("ring", member_names(5))
    with pytest.raises(TopologyError, match=r"--topology ring needs 8 members at least \(4 hubs"):
        Shape("ring", hubs=4).of(member_names(7))
    with pytest.raises(TopologyError, match="a ring has 3 hubs at least, got 2"):
        Shape("ring", hubs=2).of(member_names(8))
    with pytest.raises(TopologyError, match="--hubs sets how many hubs --topology ring has, not --topology"):
        Shape("tree", hubs=3).of(member_names(8))


def test_in_a_hub_and_spoke_the_spokes_follow_the_hub_alone_over_one_link_each() -> None:
    names = member_names(16)
    shape = topology("hub", names)
    assert shape.hubs == ("a",) and shape.follows["a"] == frozenset(names[1:])
    assert all(shape.follows[spoke] == {"a"} for spoke in names[1:])
    assert shape.links() == {frozenset(("a", spoke)) for spoke in names[1:]}  # 15, not a mesh's 120
    assert shape.receivers_of("a") == frozenset(names[1:]) and shape.receivers_of("c") == {"a"}
    assert hub_and_spoke(["a", "b", "c"], "c").follows == {"a": {"c"}, "b": {"c"}, "c": {"a", "b"}}


def test_the_hub_relays_every_restriction_but_private_from_every_spoke_to_all() -> None:
    shape = hub_and_spoke(["h", "a", "b", "c"], "h")
    assert shape.relay_section("h") == [{"from": ["a", "b", "c"], "to": "all"}]
    assert shape.relay_section("a") is None and mesh(["a", "b"]).relay_section("a") is None
    assert all(shape.relays("h", "a", r) for r in ("public", "partner", "need-to-know", "default", "green"))
    assert not shape.relays("h", "a", "private") and not shape.relays("h", "a", "red")
    assert not shape.relays("a", "h", "public")  # a spoke relays nothing


def test_a_spoke_gets_another_spokes_items_from_the_hub_in_what_the_hubs_audiences_let_it_read() -> None:
    shape = hub_and_spoke(["h", "a", "b", "c"], "h")
    bridges = {n: f"bridge.{n}.test" for n in "habc"}
    everyone = {"partner": "all", "need-to-know": "all", "private": "all"}
    audiences = {n: parse_audiences(everyone, {m: j for m, j in bridges.items() if m != n}) for n in "abc"}
    audiences["h"] = parse_audiences({"partner": "all", "need-to-know": ["b"], "private": []},
                                     {m: j for m, j in bridges.items() if m != "h"})
    # a's items: to the hub from a, to the other spokes from the hub; a's own relayed copy does not count.
    assert paths(shape, audiences, "a", "partner", "mitigation") == {"h": (), "b": ("h",), "c": ("h",)}
    assert paths(shape, audiences, "a", "need-to-know", "mitigation") == {"h": (), "b": ("h",)}
    assert paths(shape, audiences, "a", "private", "mitigation") == {"h": ()}  # never relayed
    # The hub's own items reach the spokes straight from it.
    assert paths(shape, audiences, "h", "public", "reporting") == {"a": (), "b": (), "c": ()}
    assert paths(shape, audiences, "h", "private", "reporting") == {}
    assert may_receive(shape, audiences, "c", "partner", "watch") == {"h", "a", "b"}


def test_a_tree_has_two_hubs_relaying_to_each_other_and_half_the_spokes_each() -> None:
    shape = topology("tree", member_names(6))
    assert shape.hubs == ("a", "b")
    assert shape.follows == {"a": {"b", "c", "e"}, "b": {"a", "d", "f"}, "c": {"a"}, "d": {"b"}, "e": {"a"},
                             "f": {"b"}}
    assert len(shape.links()) == 5  # a tree of 6: one link fewer than members
    assert shape.relay_section("a") == [{"from": ["b", "c", "e"], "to": "all"}]
    assert shape.relay_section("c") is None
    assert shape.relays("b", "a", "partner") and not shape.relays("b", "a", "private")


def test_in_a_tree_an_item_reaches_the_other_region_through_both_hubs() -> None:
    shape = topology("tree", member_names(6))
    bridges, audiences = open_audiences("abcdef")
    assert paths(shape, audiences, "c", "partner", "mitigation") == {
        "a": (), "e": ("a",), "b": ("a",), "d": ("a", "b"), "f": ("a", "b")}
    # A hub's own items: to its spokes and the other hub straight, to the other region through that hub.
    assert paths(shape, audiences, "b", "public", "reporting") == {
        "a": (), "d": (), "f": (), "c": ("a",), "e": ("a",)}
    assert paths(shape, audiences, "c", "private", "mitigation") == {"a": ()}  # never relayed
    # The hub's audiences decide what it hands on: b lets only d read its need-to-know nodes.
    audiences["b"] = parse_audiences({"partner": "all", "need-to-know": ["d"], "private": []},
                                     {m: j for m, j in bridges.items() if m != "b"})
    assert paths(shape, audiences, "e", "need-to-know", "watch") == {"a": (), "c": ("a",), "b": ("a",),
                                                                     "d": ("a", "b")}


def test_a_ring_has_three_hubs_each_relaying_to_the_other_two() -> None:
    shape = topology("ring", member_names(8))
    assert shape.hubs == ("a", "b", "c")
    assert shape.follows == {"a": {"b", "c", "d", "g"}, "b": {"a", "c", "e", "h"}, "c": {"a", "b", "f"},
                             "d": {"a"}, "e": {"b"}, "f": {"c"}, "g": {"a"}, "h": {"b"}}
    assert len(shape.links()) == 8  # the hubs' triangle and one link per spoke
    assert shape.relay_section("c") == [{"from": ["a", "b", "f"], "to": "all"}]


def test_in_a_ring_a_hub_may_also_hold_the_copy_of_the_other_way() -> None:
    shape = topology("ring", member_names(6))  # hubs a, b, c; spokes d at a, e at b, f at c
    _, audiences = open_audiences("abcdef")
    assert paths(shape, audiences, "d", "partner", "mitigation") == {
        "a": (), "b": ("a",), "c": ("a",), "e": ("a", "b"), "f": ("a", "c")}
    # b gets d's item from a, and maybe c's relay of it too (c -> b, when a's copy reached c first);
    # a never keeps a relay of what it relayed itself, and a spoke follows its hub alone.
    assert ways(shape, audiences, "d", "partner", "mitigation") == {
        "a": {"d"}, "b": {"a", "c"}, "c": {"a", "b"}, "e": {"b"}, "f": {"c"}}
    # A hub's own item: the other hubs have it straight from it, and maybe relayed by each other.
    assert ways(shape, audiences, "a", "public", "reporting") == {
        "b": {"a", "c"}, "c": {"a", "b"}, "d": {"a"}, "e": {"b"}, "f": {"c"}}
    assert ways(shape, audiences, "d", "private", "mitigation") == {"a": {"d"}}  # never relayed
    assert shape.is_way(["d", "a", "c", "b"]) and shape.is_way(["d", "a", "b"])
    assert not shape.is_way(["d", "b"])  # b does not follow d
    assert not shape.is_way(["d", "a", "e", "b"])  # e is a spoke: it relays nothing
    assert not shape.is_way(["d", "a", "b", "a"])  # a member twice
    # A tree or a hub and spoke has one way to each receiver: the last relay of its path.
    for other in (topology("tree", member_names(6)), topology("hub", member_names(6))):
        for publisher in ("a", "d"):
            assert ways(other, audiences, publisher, "partner", "mitigation") == {
                receiver: {via[-1] if via else publisher}
                for receiver, via in paths(other, audiences, publisher, "partner", "mitigation").items()}
            assert all(other.is_way([publisher, *via])
                       for via in paths(other, audiences, publisher, "partner", "mitigation").values())


def test_on_a_ring_of_four_hubs_each_follows_its_neighbours_and_an_item_comes_by_two_ways_at_most() -> None:
    shape = Shape("ring", hubs=4).of(member_names(8))  # hubs a-b-c-d-a; spokes e at a, f at b, g at c, h at d
    assert shape.hubs == ("a", "b", "c", "d")
    assert shape.follows == {"a": {"b", "d", "e"}, "b": {"a", "c", "f"}, "c": {"b", "d", "g"},
                             "d": {"a", "c", "h"}, "e": {"a"}, "f": {"b"}, "g": {"c"}, "h": {"d"}}
    _, audiences = open_audiences("abcdefgh")
    # The far hub c gets e's item through b or d; the fewest relays, b first by name.
    assert paths(shape, audiences, "e", "partner", "mitigation") == {
        "a": (), "b": ("a",), "d": ("a",), "c": ("a", "b"), "f": ("a", "b"), "h": ("a", "d"),
        "g": ("a", "b", "c")}
    # c may hold b's copy or d's; b and d may hold c's when it came the other way round. a only e's: every
    # way from e passes it. Two ways at most to a hub: it has two neighbours.
    assert ways(shape, audiences, "e", "partner", "mitigation") == {
        "a": {"e"}, "b": {"a", "c"}, "d": {"a", "c"}, "c": {"b", "d"}, "f": {"b"}, "h": {"d"}, "g": {"c"}}
    # Hub d's own item: b does not follow d, so it holds a's copy, c's, or both. a holds d's own copy, and
    # b's too if the item came around by c and b (as when a subscribed to d's new node late).
    assert ways(shape, audiences, "d", "public", "reporting")["b"] == {"a", "c"}
    assert ways(shape, audiences, "d", "public", "reporting")["a"] == {"d", "b"}


def test_a_hub_consortium_writes_configs_the_bridge_loads(tmp_path: Path) -> None:
    """The topology as the bridges read it: the hub's relay: rules pass the config's checks (they widen
    no audience) and every member follows whom the topology says."""
    names = ["a", "b", "c", "d"]
    shape = topology("hub", names)
    consortium = Consortium(tmp_path, dict(zip(names, demo_addresses(4), strict=True)), topology=shape)
    consortium.write_files()
    configs = {name: load_config(consortium[name].config_path) for name in names}
    assert len(configs["a"].relay.rules) == 1 and configs["a"].relay.rules[0].to == {"b", "c", "d"}
    assert not configs["b"].relay
    for name, config in configs.items():
        followed = {m.name for m in config.registry.peers() if m.follow}
        assert followed == shape.follows[name], name


def test_server_kinds_are_dealt_round_robin() -> None:
    assert server_kinds("prosody,ejabberd", ["a", "b", "c"]) == {"a": "prosody", "b": "ejabberd",
                                                                 "c": "prosody"}
    assert server_kinds("ejabberd", ["a", "b"]) == {"a": "ejabberd", "b": "ejabberd"}
    with pytest.raises(TopologyError, match="prosody and ejabberd, got 'openfire'"):
        server_kinds("openfire", ["a", "b"])


def test_an_item_reaches_the_followers_its_audience_lets_read_it() -> None:
    shape = mesh(["a", "b", "c"])
    bridges = {"b": "bridge.b.test", "c": "bridge.c.test"}
    audiences = {"a": parse_audiences({"partner": "all", "need-to-know": ["b"]}, bridges)}
    assert may_receive(shape, audiences, "a", "public", "reporting") == {"b", "c"}
    assert may_receive(shape, audiences, "a", "partner", "watch") == {"b", "c"}
    assert may_receive(shape, audiences, "a", "need-to-know", "mitigation") == {"b"}
    assert may_receive(shape, audiences, "a", "private", "mitigation") == frozenset()


def test_the_two_member_demo_keeps_its_addresses_and_more_members_get_their_own() -> None:
    assert demo_addresses(2) == ["127.0.0.2", "127.0.0.3"]
    more = demo_addresses(16)
    assert more[2] == "127.0.0.240" and more[-1] == "127.0.0.253" and len(set(more)) == 16
