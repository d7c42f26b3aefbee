"""SIGHUP reloads: audiences and the registry are applied live; everything else waits for a restart."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.test_members import base, load  # noqa: F401 - base is a fixture
from xmppbridge.config.reload import reloaded
from xmppbridge.errors import ConfigError
from xmppbridge.policy.may import Action, Actor
from xmppbridge.xmpp.servers import ServerAddress


def test_reloading_an_unchanged_file_changes_nothing(tmp_path: Path, base: dict) -> None:  # noqa: F811
    running = load(tmp_path, base)
    config, restart = reloaded(running, load(tmp_path, base))
    assert restart == []
    node = "iodef/need-to-know/other"
    assert config.node_audience(node) == running.node_audience(node)


def test_a_narrower_audience_is_applied_and_the_rest_is_kept(tmp_path: Path, base: dict) -> None:  # noqa: F811
    running = load(tmp_path, base)
    changed = copy.deepcopy(base)
    changed["audiences"]["need-to-know"] = ["c"]
    changed["component"]["server"] = {"port": 5348}  # needs a restart
    changed["pubsub"]["reconcile_interval"] = 30
    config, restart = reloaded(running, load(tmp_path, changed))
    assert restart == ["servers", "reconcile_interval"]
    assert config.servers == (ServerAddress("127.0.0.1", 5347),) and config.reconcile_interval == 300
    assert config.node_audience("iodef/need-to-know/other").bridges == {"bridge.c.test"}
    assert config.node_audience("iodef/need-to-know/mitigation").bridges == {"bridge.b.test"}


def test_the_reconcile_interval_is_a_positive_number_of_seconds(tmp_path: Path, base: dict) -> None:  # noqa: F811
    assert load(tmp_path, base).reconcile_interval == 300
    base["pubsub"]["reconcile_interval"] = 0
    with pytest.raises(ConfigError, match="pubsub.reconcile_interval: must be a positive number of seconds"):
        load(tmp_path, base)


def test_rights_follow_the_audiences_live(tmp_path: Path, base: dict) -> None:  # noqa: F811
    base["feed"]["users"] = {"b-analyst": {"token_hash": "sha256$" + "0" * 64, "read": ["member:b"]}}
    base["chat"] = {"readers": {"member:b": ["analyst@b.test"]}}
    running = load(tmp_path, base)
    changed = copy.deepcopy(base)
    changed["audiences"]["need-to-know"] = ["c"]
    del changed["audiences"]["need-to-know/mitigation"]
    config, restart = reloaded(running, load(tmp_path, changed))
    assert restart == []
    assert config.node_audience("iodef/need-to-know/other").bridges == {"bridge.c.test"}
    # b's people on our feed and in chat lose what b's bridge lost, at once.
    for actor in (Actor.user("b-analyst"), Actor.jid("analyst@b.test")):
        assert running.policy.may(actor, Action.READ, ("need-to-know", "other"))
        assert not config.policy.may(actor, Action.READ, ("need-to-know", "other"))
        assert config.policy.may(actor, Action.READ, ("partner", "other"))


def test_new_credentials_need_a_restart_and_a_removed_user_keeps_no_rights(tmp_path: Path, base: dict) -> None:  # noqa: F811, E501
    base["feed"]["users"] = {"u": {"token_hash": "sha256$" + "0" * 64, "read": ["partner"]}}
    running = load(tmp_path, base)
    changed = copy.deepcopy(base)
    changed["feed"]["users"] = {"v": {"token_hash": "sha256$" + "1" * 64, "read": ["partner"]}}
    config, restart = reloaded(running, load(tmp_path, changed))
    assert restart == ["feed"]
    assert not config.policy.may(Actor.user("u"), Action.READ, ("partner", "other"))
