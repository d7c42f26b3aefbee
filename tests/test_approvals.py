"""Subscription approval, the parts without a server: the XEP-0060 §8.6 forms, the store's approvals
table, the config switch, the CLI's decisions and doctor's advice (the flow itself runs on ejabberd in
test_integration_approval.py)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.test_config import base, write  # noqa: F401 - base is a fixture
from tests.test_store_feed import old_store
from xmppbridge.config.settings import load_config
from xmppbridge.doctor.advice import approval_check
from xmppbridge.errors import ConfigError
from xmppbridge.ops.members import decide, list_lines, pending_lines
from xmppbridge.store import Store
from xmppbridge.store.approvals import APPROVED, DENIED, PENDING
from xmppbridge.store.db import SCHEMA_VERSION
from xmppbridge.xmpp.authorization import (
    AUTHORIZATION_FORM,
    UNSUPPORTED,
    AuthorizationRequest,
    authorization_answer,
    authorization_request,
    form_fields,
)

NODE = "iodef/need-to-know/mitigation"
# What ejabberd 23.01 sends the node owner (captured from a real server).
EJABBERD_REQUEST = f"""<message xmlns="jabber:component:accept" to="bridge.p.test" from="pubsub.p.test">
<x xmlns="jabber:x:data" type="form"><title>PubSub subscriber request</title>
<field var="FORM_TYPE" type="hidden"><value>{AUTHORIZATION_FORM}</value></field>
<field var="pubsub#node" type="text-single" label="Node ID"><required/><value>{NODE}</value></field>
<field var="pubsub#subscriber_jid" type="jid-single"><required/><value>Bridge.S.test</value></field>
<field var="pubsub#allow" type="boolean"><required/><value>0</value></field></x></message>"""


def test_ejabberds_request_is_read() -> None:
    request = authorization_request(ET.fromstring(EJABBERD_REQUEST))
    assert request == AuthorizationRequest("pubsub.p.test", NODE, "bridge.s.test", None)


@pytest.mark.parametrize("change", [
    lambda s: s.replace(AUTHORIZATION_FORM, "http://jabber.org/protocol/pubsub#node_config"),  # another form
    lambda s: s.replace('type="form"', 'type="result"'),
    lambda s: s.replace(f"<value>{NODE}</value>", "<value></value>"),  # no node
    lambda s: s.replace("Bridge.S.test", "not a jid@@"),
    lambda s: s.replace('from="pubsub.p.test"', 'from="pubsub.p.test" type="error"'),
])
def test_anything_else_is_not_a_request(change) -> None:
    assert authorization_request(ET.fromstring(change(EJABBERD_REQUEST))) is None


def test_the_answer_submits_the_form_with_allow() -> None:
    request = AuthorizationRequest("pubsub.p.test", "a<b", "bridge.s.test", "sub-1")
    answer = ET.fromstring(authorization_answer("bridge.p.test", request, allow=False))
    assert (answer.get("from"), answer.get("to")) == ("bridge.p.test", "pubsub.p.test")
    [form] = answer
    assert form.get("type") == "submit"
    assert form_fields(form) == {"FORM_TYPE": AUTHORIZATION_FORM, "pubsub#node": "a<b",
                                 "pubsub#subscriber_jid": "bridge.s.test", "pubsub#allow": "false",
                                 "pubsub#subid": "sub-1"}
    allowed = ET.fromstring(authorization_answer("bridge.p.test", request, allow=True))
    assert form_fields(allowed[0])["pubsub#allow"] == "true"


def test_store_records_requests_and_decisions(store_target: str) -> None:
    with Store(store_target) as store:
        first = store.approval_requested(NODE, "bridge.s.test")
        again = store.approval_requested(NODE, "bridge.s.test", "sub-1")
        assert (first.state, first.requests, again.requests, again.subid) == (PENDING, 1, 2, "sub-1")
        assert store.approved_jids(NODE) == frozenset()
        assert store.decide_approval(NODE, "bridge.x.test", APPROVED, "cli:me") is None  # nobody asked

        decision = store.decide_approval(NODE, "bridge.s.test", APPROVED, "cli:me")
        assert decision is not None and decision.decided_by == "cli:me" and decision.sent_at is None
        assert store.undelivered_decisions() == [decision]
        assert store.approved_jids(NODE) == frozenset({"bridge.s.test"})
        assert store.approved_jids("iodef/partner/other") == frozenset()
        store.approval_sent(decision)
        assert store.undelivered_decisions() == []

        store.approval_requested(NODE, "bridge.d.test")
        store.decide_approval(NODE, "bridge.d.test", DENIED, "analyst@p.test")
        assert [a.jid for a in store.approvals((PENDING,))] == []
        assert {a.jid: a.state for a in store.approvals()} == {"bridge.s.test": APPROVED,
                                                               "bridge.d.test": DENIED}
        with pytest.raises(ValueError, match="approved or denied"):
            store.decide_approval(NODE, "bridge.d.test", PENDING, "me")


def test_a_pending_request_can_be_withdrawn_a_decided_one_stays(store_target: str) -> None:
    with Store(store_target) as store:
        store.approval_requested(NODE, "bridge.s.test")
        store.approval_requested(NODE, "bridge.d.test")
        store.decide_approval(NODE, "bridge.d.test", DENIED, "a")
        assert store.withdraw_approval_request(NODE, "bridge.s.test")
        assert not store.withdraw_approval_request(NODE, "bridge.s.test")
        assert not store.withdraw_approval_request(NODE, "bridge.d.test")
        assert [(a.jid, a.state) for a in store.approvals()] == [("bridge.d.test", DENIED)]


def test_a_decision_made_while_one_is_sent_stays_unsent(store_target: str) -> None:
    with Store(store_target) as store:
        store.approval_requested(NODE, "bridge.s.test")
        first = store.decide_approval(NODE, "bridge.s.test", APPROVED, "a")
        assert first is not None
        store.sql("UPDATE approvals SET decided_at = '2099-01-01T00:00:00.000000Z'")  # a newer one
        store.approval_sent(first)
        assert [a.jid for a in store.undelivered_decisions()] == ["bridge.s.test"]


def test_cli_decision_without_a_running_bridge_is_recorded(store_target: str) -> None:
    with Store(store_target) as store:
        assert pending_lines(store) == ["no subscription requests pending"]
        ok, message = decide(store, NODE, "bridge.s.test", True, timeout=0)
        assert not ok and "no subscription request from bridge.s.test" in message
        store.approval_requested(NODE, "bridge.s.test")
        assert pending_lines(store)[0].startswith(f"{NODE} bridge.s.test pending, asked ")
        ok, message = decide(store, NODE, " Bridge.S.test", True, timeout=0)
        assert ok and message.endswith("and sends it when it is")
        assert pending_lines(store) == ["no subscription requests pending"]
        [row] = store.approvals()
        assert (row.jid, row.state, row.sent_at) == ("bridge.s.test", APPROVED, None)


def test_config_switch(tmp_path: Path, base: dict) -> None:  # noqa: F811 - the fixture
    assert load_config(write(tmp_path, base)).approval == "auto"
    base["pubsub"]["approval"] = "off"
    assert load_config(write(tmp_path, base)).approval == "off"
    base["pubsub"]["approval"] = "yes"
    with pytest.raises(ConfigError, match=r"pubsub\.approval: must be 'auto' .* or 'off'"):
        load_config(write(tmp_path, base))


def test_members_list_shows_registry_and_decisions(tmp_path: Path, store_target: str, base: dict) -> None:  # noqa: F811
    config = load_config(write(tmp_path, base))
    with Store(store_target) as store:
        store.approval_requested(NODE, "bridge.d.test")
        store.decide_approval(NODE, "bridge.d.test", DENIED, "cli:me")
        lines = list_lines(config, store)
    assert any(line.startswith(f"{NODE} bridge.d.test denied, asked ") and "by cli:me" in line
               for line in lines), lines


def test_doctor_advice() -> None:
    assert approval_check("pubsub.a.test", "auto", True).status == "ok"
    assert approval_check("pubsub.a.test", "off", False).status == "ok"
    unsupported = approval_check("pubsub.a.test", "auto", False)
    assert unsupported.status == "warn" and UNSUPPORTED in unsupported.found
    assert "pubsub.approval: off" in unsupported.fix


def test_a_version_6_store_gets_the_approvals_table(tmp_path: Path) -> None:
    path = tmp_path / "v6.sqlite"
    conn = old_store(path, 6)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'approvals'").fetchone()[0] == 0
    conn.close()
    with Store(path) as store:
        assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert store.approvals() == []
        store.approval_requested(NODE, "bridge.s.test")
        assert [a.state for a in store.approvals()] == [PENDING]
