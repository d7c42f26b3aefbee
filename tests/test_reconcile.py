"""Reconcile rounds against a scripted service: the order of changes, the audit lines, failures survived.

The integration tests run rounds against real Prosody; here the service's answers (and its failures)
are under the test's control.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree as ET

import pytest
from slixmpp import Iq
from slixmpp.exceptions import IqError

from tests.test_members import base, load  # noqa: F401 - base is a fixture
from xmppbridge.xmpp.reconcile import OWNER_NS, Reconciler

ME, B, C = "bridge.a.test", "bridge.b.test", "bridge.c.test"


class ScriptedService:
    """What Reconciler needs of BridgeComponent: disco#items and the owner's pubsub requests."""

    def __init__(self, nodes: dict[str, dict[str, str]], subscribed: dict[str, list[str]]) -> None:
        self.nodes, self.subscribed = nodes, subscribed  # node -> {jid: affiliation}, node -> [jid]
        self.sent: list[tuple[str, str, str, str]] = []  # (what, node, jid, value) in order
        self.failing: set[str] = set()  # nodes whose affiliations request times out
        # (node, jid): a leaver whose bridge renews its subscription just after our cancel, so that the
        # removal of its affiliation is answered forbidden, once (Prosody 0.12, see xmpp.reconcile)
        self.renewing: set[tuple[str, str]] = set()
        self.boundjid = SimpleNamespace(bare=ME)
        self.online = asyncio.Event()
        self.online.set()
        self.plugin = {"xep_0030": SimpleNamespace(get_items=self.disco_items)}
        self.pubsub = SimpleNamespace(
            get_node_affiliations=self.affiliations, get_node_subscriptions=self.subscriptions,
            modify_affiliations=self.modify_affiliations, modify_subscriptions=self.modify_subscriptions)

    async def disco_items(self, **_: object) -> dict[str, dict[str, list[tuple[str, str, str]]]]:
        return {"disco_items": {"items": [("pubsub.a.test", n, "") for n in [*self.nodes, "other/node", ""]]}}

    async def affiliations(self, service: str, node: str, **_: object) -> Iq:
        if node in self.failing:
            raise TimeoutError("no answer")
        rows = "".join(f"<affiliation jid='{j}' affiliation='{a}'/>" for j, a in self.nodes[node].items())
        return owner_answer(f"<affiliations node='{node}'>{rows}</affiliations>")

    async def subscriptions(self, service: str, node: str, **_: object) -> Iq:
        rows = "".join(f"<subscription jid='{j}' subscription='subscribed'/>" for j in self.subscribed[node])
        return owner_answer(f"<subscriptions node='{node}'>{rows}</subscriptions>")

    async def modify_affiliations(self, service: str, node: str, affiliations: list[tuple[str, str]],
                                  **_: object) -> None:
        for jid, affiliation in affiliations:
            self.sent.append(("affiliation", node, jid, affiliation))
            if (node, jid) in self.renewing and affiliation == "none":
                self.renewing.discard((node, jid))
                # Its cancelled subscription gone, the one it renewed there (bare, as bridges subscribe).
                self.subscribed[node] = [j for j in self.subscribed[node] if j.split("/")[0] != jid] + [jid]
                refusal = Iq()
                refusal["type"] = "error"
                refusal["error"]["condition"] = "forbidden"
                raise IqError(refusal)

    async def modify_subscriptions(self, service: str, node: str, subscriptions: list[tuple[str, str]],
                                   **_: object) -> None:
        for jid, subscription in subscriptions:
            self.sent.append(("subscription", node, jid, subscription))


def owner_answer(body: str) -> Iq:
    return Iq(xml=ET.fromstring(f"<iq xmlns='jabber:component:accept' type='result'>"
                                f"<pubsub xmlns='{OWNER_NS}'>{body}</pubsub></iq>"))


NTK, MITIGATION, PUBLIC = "iodef/need-to-know/other", "iodef/need-to-know/mitigation", "iodef/public/other"


@pytest.fixture
def service() -> ScriptedService:
    # need-to-know: [b, c], need-to-know/mitigation: [b] in tests.test_members' base
    return ScriptedService(
        {NTK: {ME: "owner", B: "member"}, MITIGATION: {ME: "owner", B: "member", C: "member"},
         PUBLIC: {ME: "owner"}},
        {NTK: [B], MITIGATION: [B, f"{C}/mirror"], PUBLIC: ["eve@b.test/x"]})


async def test_a_round_cancels_then_removes_then_adds_and_audits_each(
        tmp_path: Path, base: dict, service: ScriptedService, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    counted: list[str] = []
    reconciler = Reconciler(load(tmp_path, base), service, counted.append)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, "xmppbridge.xmpp.reconcile"):
        assert await reconciler.round("start")
    assert service.sent == [  # nodes in name order
        ("subscription", MITIGATION, f"{C}/mirror", "none"),  # mitigation: b only, c leaves: first this
        ("affiliation", MITIGATION, C, "none"),
        ("affiliation", NTK, C, "member"),  # need-to-know/other: b and c
    ]  # the public node is open: untouched, eve's subscription too
    assert counted == ["subscription-cancelled", "removed", "added"]
    audit = [r.getMessage() for r in caplog.records if r.getMessage().startswith("audit: ")]
    assert audit[1] == (f"audit: removed {C} (member c) from {MITIGATION}: not in audience "
                        "need-to-know/mitigation (start)")
    service.sent.clear()
    service.nodes[NTK][C] = "member"
    service.nodes[MITIGATION].pop(C)
    service.subscribed[MITIGATION].remove(f"{C}/mirror")
    assert await reconciler.round("periodic") and service.sent == []  # nothing left to change


async def test_a_node_that_fails_is_logged_and_the_others_still_reconciled(
        tmp_path: Path, base: dict, service: ScriptedService, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    service.failing.add(NTK)
    reconciler = Reconciler(load(tmp_path, base), service)  # type: ignore[arg-type]
    assert not await reconciler.round("periodic")
    assert [s[1] for s in service.sent] == [MITIGATION, MITIGATION]  # other/node is not ours
    assert f"reconcile (periodic) of {NTK} on pubsub.a.test failed: no answer; trying again" in caplog.text
    service.failing.clear()
    assert await reconciler.round("periodic")  # the next round does it
    assert service.sent[-1] == ("affiliation", NTK, C, "member")


async def test_a_leaver_that_subscribes_again_before_its_removal_is_cancelled_again_and_removed(
        tmp_path: Path, base: dict, service: ScriptedService) -> None:  # noqa: F811
    service.renewing.add((MITIGATION, C))
    counted: list[str] = []
    reconciler = Reconciler(load(tmp_path, base), service, counted.append)  # type: ignore[arg-type]
    assert await reconciler.round("reload")
    assert [sent for sent in service.sent if sent[1] == MITIGATION] == [
        ("subscription", MITIGATION, f"{C}/mirror", "none"),
        ("affiliation", MITIGATION, C, "none"),  # forbidden: c's bridge had subscribed again
        ("subscription", MITIGATION, C, "none"),
        ("affiliation", MITIGATION, C, "none"),
    ]
    assert counted == ["subscription-cancelled", "subscription-cancelled", "removed", "added"]
