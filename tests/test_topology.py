"""The shape of a local consortium as data: names, server kinds, who follows whom, who may receive what."""

from __future__ import annotations

import pytest

from xmppbridge.demo.run import demo_addresses
from xmppbridge.demo.topology import TopologyError, may_receive, member_names, mesh, server_kinds, topology
from xmppbridge.policy.audiences import parse_audiences


def test_a_full_mesh_has_every_member_follow_every_other_over_one_link_per_pair() -> None:
    names = member_names(16)
    assert names[:3] == ["a", "b", "c"] and names[-1] == "p"
    shape = topology("mesh", names)
    assert shape.follows["a"] == frozenset(names[1:])
    assert shape.receivers_of("c") == frozenset(names) - {"c"}
    assert len(shape.links()) == 16 * 15 // 2


def test_hub_and_unknown_shapes_and_sizes_are_refused_with_what_to_ask_instead() -> None:
    with pytest.raises(TopologyError, match="--topology hub is not available yet.*use --topology mesh"):
        topology("hub", ["a", "b"])
    with pytest.raises(TopologyError, match="must be one of mesh, hub"):
        topology("ring", ["a", "b"])
    with pytest.raises(TopologyError, match="between 2 and 26"):
        member_names(1)


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
