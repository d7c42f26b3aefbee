"""Membership churn on reload: a member joins, leaves or rotates its key, and the reloaded config's trust
and subscriptions follow, live, with one audit line per change (``policy.churn``, ``reload``)."""

from __future__ import annotations

import copy
from pathlib import Path

from tests.test_members import base, load, member  # noqa: F401 - base is a fixture
from xmppbridge.config.reload import reloaded
from xmppbridge.policy.churn import Churn, churn
from xmppbridge.signing.keys import generate_identity_files


def reload(running, loaded):  # noqa: ANN001, ANN201 - Config, Config -> (Config, Churn, restart)
    config, restart = reloaded(running, loaded)
    return config, churn(running.registry, config.registry, running.sources.services,
                         config.sources.services), restart


def test_a_member_that_joins_is_trusted_followed_and_reads_our_nodes_without_a_restart(
        tmp_path: Path, base: dict) -> None:  # noqa: F811
    running = load(tmp_path, base)
    changed = copy.deepcopy(base)
    changed["members"].append(member(tmp_path, "d"))
    config, changes, restart = reload(running, load(tmp_path, changed))
    assert restart == []
    assert changes == Churn(joined=("d",), followed=("pubsub.d.test",))
    assert changes.lines() == ["member d joined", "following pubsub.d.test"]
    assert config.sources.follows("pubsub.d.test") and config.trust.sources["pubsub.d.test"].signers
    assert len(config.trust) == len(running.trust) + 1
    assert "bridge.d.test" in config.node_audience("iodef/partner/other").bridges  # partner: all
    assert "bridge.d.test" not in config.node_audience("iodef/need-to-know/other").bridges


def test_a_member_that_leaves_is_neither_trusted_nor_followed_nor_a_reader(
        tmp_path: Path, base: dict) -> None:  # noqa: F811
    running = load(tmp_path, base)
    changed = copy.deepcopy(base)
    changed["members"] = [m for m in changed["members"] if m["name"] != "c"]
    changed["audiences"]["need-to-know"] = ["b"]  # an audience naming a leaver is refused at load
    config, changes, restart = reload(running, load(tmp_path, changed))
    assert restart == []
    assert changes == Churn(left=("c",), dropped=("pubsub.c.test",))
    assert not config.sources.follows("pubsub.c.test") and "pubsub.c.test" not in config.trust.sources
    assert "bridge.c.test" not in config.node_audience("iodef/partner/other").bridges


def test_a_rotation_pins_the_new_certificate_beside_the_old_one(tmp_path: Path, base: dict) -> None:  # noqa: F811
    running = load(tmp_path, base)
    generate_identity_files("CSIRT b, new key", tmp_path / "b2.key", tmp_path / "b2.crt", domains=("b.test",))
    changed = copy.deepcopy(base)
    changed["members"][1]["certificate"] = ["b.crt", "b2.crt"]
    config, changes, restart = reload(running, load(tmp_path, changed))
    assert restart == []
    assert changes == Churn(rotated=("b",))
    assert len(config.trust) == len(running.trust) + 1
    assert len(config.trust.sources["pubsub.b.test"].signers) == 2  # both keys may sign b's items
    # Once the old key is retired: only the new one.
    changed["members"][1]["certificate"] = "b2.crt"
    retired, changes, _ = reload(config, load(tmp_path, changed))
    assert changes == Churn(rotated=("b",)) and len(retired.trust.sources["pubsub.b.test"].signers) == 1


def test_an_unchanged_registry_is_no_churn(tmp_path: Path, base: dict) -> None:  # noqa: F811
    running = load(tmp_path, base)
    _, changes, _ = reload(running, load(tmp_path, base))
    assert not changes and changes.lines() == []
