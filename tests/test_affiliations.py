"""The pure core of reconcile: a node's affiliations and subscriptions vs the audience it must have."""

from __future__ import annotations

from xmppbridge.policy.affiliations import NONE, Changes, NodeSubscription, plan, target_of
from xmppbridge.policy.audiences import OPEN, Audience

OWNER = "bridge.a.test"
B, C, D = "bridge.b.test", "bridge.c.test", "bridge.d.test"


def sub(jid: str, state: str = "subscribed", subid: str | None = None) -> NodeSubscription:
    return NodeSubscription(jid, subid, state)


def test_target_is_the_audience_bridges_plus_the_approved() -> None:
    audience = Audience(False, frozenset({"b"}), frozenset({B}))
    assert target_of(audience, frozenset()) == {B}
    assert target_of(audience, frozenset({"Bridge.D.test/res"})) == {B, D}
    assert target_of(Audience(False), frozenset()) == frozenset()


def test_open_nodes_take_no_changes() -> None:
    assert target_of(OPEN, frozenset({D})) is None
    assert plan({OWNER: "owner", C: "member"}, [sub(C), sub("eve@b.test/x")], OWNER, None) == NONE
    assert not NONE


def test_missing_members_are_added_and_leavers_removed_with_their_subscriptions() -> None:
    changes = plan({OWNER: "owner", C: "member"}, [sub(C), sub(f"{OWNER}/x")], OWNER, frozenset({B}))
    assert changes == Changes(add=(B,), remove=(C,), cancel=(sub(C),))


def test_a_node_that_matches_takes_no_changes() -> None:
    assert plan({OWNER: "owner", B: "member"}, [sub(B)], OWNER, frozenset({B})) == NONE
    assert plan({OWNER: "owner", B: "publisher"}, [], OWNER, frozenset({B})) == NONE  # reads already


def test_the_owner_is_never_touched_even_when_the_target_leaves_it_out() -> None:
    changes = plan({OWNER: "owner", "BRIDGE.A.TEST": "owner"}, [sub(OWNER)], OWNER.upper(), frozenset())
    assert changes == NONE
    assert plan({}, [], OWNER, frozenset({OWNER})) == NONE  # and never added as a member


def test_an_outcast_in_the_target_becomes_a_member_and_one_outside_stays() -> None:
    assert plan({B: "outcast", C: "outcast"}, [], OWNER, frozenset({B})) == Changes(add=(B,))


def test_subscriptions_outside_the_target_are_cancelled_by_bare_jid() -> None:
    subs = [sub(f"{B}/mirror", subid="1"), sub("eve@b.test/phone", subid="2"), sub(D, state="pending"),
            sub(C, state="none")]
    changes = plan({OWNER: "owner", B: "member"}, subs, OWNER, frozenset({B}))
    # eve is on a member's domain, not the member's bridge; a pending request is cancelled too; a
    # subscription already none needs nothing.
    assert changes.cancel == (sub(D, state="pending"), sub("eve@b.test/phone", subid="2"))
    assert changes.add == () and changes.remove == ()
