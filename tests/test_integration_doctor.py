"""`xmppbridge doctor` against real Prosody servers: quiet on a healthy consortium, with or without the
bridge running, and naming the peer or setting and the cause for the usual first-day failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from tests.integration import eventually, loopback_consortium
from tests.test_integration_federation import iodef2
from xmppbridge.demo.consortium import Consortium, Member
from xmppbridge.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    """a.test and b.test with their bridges, and c.test whose bridge is not one of its server's admins
    (and is not started: its server would refuse it the nodes it creates)."""
    consortium = loopback_consortium(tmp_path_factory.mktemp("doctor"), {"a": 82, "b": 83, "c": 84},
                                     feed_port_base=18485, discovery_interval=1.0)
    consortium["c"].prosody.bridge_is_admin = False
    # far.test resolves (B's hosts file) to an address where a "firewall" drops connections (``blackhole``).
    consortium["b"].prosody.peers["far.test"] = blackhole_address()
    consortium.write_files()
    try:
        consortium.start_servers()
        for name in ("a", "b"):
            consortium.start_bridge(name)
        document = consortium.workdir / "inc.xml"
        document.write_bytes(iodef2("INC-DOCTOR-1", restriction="public"))
        assert consortium.publish("a", document).returncode == 0
        with closing(Store(consortium["b"].workdir / "data" / "b.sqlite")) as store:
            eventually(lambda: store.count_entries(), what="A's item at B")
        yield consortium
    finally:
        consortium.stop()


def blackhole_address() -> str:
    return f"127.0.{os.environ.get('XMPPBRIDGE_TEST_SLOT', '0')}.85"


@pytest.fixture
def blackhole() -> Iterator[None]:
    """Port 5269 of ``blackhole_address`` drops connection attempts as a firewall would: a listener that
    never accepts, its backlog full, so the kernel leaves further SYNs unanswered."""
    with socket.socket() as listener:
        listener.bind((blackhole_address(), 5269))
        listener.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex((blackhole_address(), 5269))
            yield
        finally:
            for filler in fillers:
                filler.close()


@pytest.fixture
def b_stopped(trio: Consortium) -> Iterator[Member]:
    """B's bridge stopped for the test, started again after it."""
    trio.stop_bridge("b")
    try:
        yield trio["b"]
    finally:
        trio.start_bridge("b")


def doctor(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xmppbridge.cli", "doctor", "-c", str(config),
                           "--timeout", "5", *extra], capture_output=True, text=True, timeout=120)


def variant(member: Member, name: str, change: dict[str, object]) -> Path:
    """A copy of ``member``'s config with the top-level sections in ``change`` replaced."""
    config = yaml.safe_load(member.config_path.read_text())
    config.update(change)
    path = member.config_path.with_name(f"{member.name}-{name}.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def lines(result: subprocess.CompletedProcess[str], status: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(status)]


def test_passes_with_the_bridge_running(trio: Consortium) -> None:
    result = doctor(trio["b"].config_path)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not lines(result, "FAIL")
    assert "the running bridge is connected" in result.stdout
    assert "peer pubsub.a.test subscribe+read" in result.stdout


def test_passes_without_the_bridge_and_leaves_subscriptions_as_they_were(b_stopped: Member) -> None:
    result = doctor(b_stopped.config_path)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not lines(result, "FAIL")
    assert "secret accepted" in result.stdout
    assert "by the bridge's existing subscription" in result.stdout
    report = json.loads(doctor(b_stopped.config_path, "--json").stdout)
    assert report["failed"] is False
    assert {"name", "status", "found", "fix"} <= report["checks"][0].keys()


def test_passes_after_the_bridge_was_killed(trio: Consortium) -> None:
    """kill -9 leaves "online" in the store: the doctor's request goes unanswered, and it connects itself."""
    trio.stop_bridge("b", kill=True)
    try:
        with closing(Store(trio["b"].workdir / "data" / "b.sqlite")) as store:
            assert store.state()["connection"][0] == "online"
        result = doctor(trio["b"].config_path)
    finally:
        trio.start_bridge("b")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "secret accepted" in result.stdout


def test_names_an_unresolvable_peer(b_stopped: Member) -> None:
    config = yaml.safe_load(b_stopped.config_path.read_text())
    config = variant(b_stopped, "nowhere", {"subscriptions": [*config.get("subscriptions", []),
                                                              {"service": "pubsub.nowhere.test"}]})
    result = doctor(config)
    print(result.stdout)
    assert result.returncode == 1
    [failed] = lines(result, "FAIL")
    assert "peer pubsub.nowhere.test reachable" in failed
    assert "remote-server-not-found" in failed and "lua-unbound" in failed


def test_names_a_firewall_that_drops_s2s(b_stopped: Member, blackhole: None) -> None:
    config = variant(b_stopped, "far", {"subscriptions": [{"service": "pubsub.far.test"}]})
    result = doctor(config)  # gives up before Prosody does (after 20 s)
    print(result.stdout)
    assert result.returncode == 1
    [failed] = lines(result, "FAIL")
    assert "peer pubsub.far.test reachable" in failed and "no answer" in failed
    assert "firewall" in failed and "5269" in failed


def test_names_a_closed_component_port(b_stopped: Member) -> None:
    config = yaml.safe_load(b_stopped.config_path.read_text())
    closed = {**config["component"], "server": {"host": blackhole_address(), "port": 5347}}
    result = doctor(variant(b_stopped, "port", {"component": closed}))
    print(result.stdout)
    assert result.returncode == 1
    [failed] = lines(result, "FAIL")
    assert f"cannot connect to {blackhole_address()}:5347" in failed
    assert "component port must be open" in failed


def test_names_a_wrong_secret(b_stopped: Member) -> None:
    config = yaml.safe_load(b_stopped.config_path.read_text())
    config = variant(b_stopped, "secret", {"component": {**config["component"], "secret": "wrong"}})
    result = doctor(config)
    print(result.stdout)
    assert result.returncode == 1
    [failed] = lines(result, "FAIL")
    assert "component connection" in failed and "not-authorized" in failed
    assert "component.secret" in failed


def test_names_a_component_that_is_not_an_admin(trio: Consortium) -> None:
    result = doctor(trio["c"].config_path)
    print(result.stdout)
    assert result.returncode == 1
    [failed] = lines(result, "FAIL")
    assert "pubsub admin on pubsub.c.test" in failed and "forbidden" in failed
    assert "admins" in failed
