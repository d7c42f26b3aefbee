"""component.servers: addresses read and checked, and the order they are tried in (xmpp.servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_config import base, write  # noqa: F401 - the fixture
from xmppbridge.config.settings import load_config
from xmppbridge.errors import ConfigError
from xmppbridge.xmpp.servers import RECONNECT_MAX_DELAY, Rotation, ServerAddress, parse_address

ONE, TWO, THREE = (ServerAddress(f"127.0.18.{n}", 5347) for n in (250, 251, 252))


def test_addresses_are_host_port_host_alone_or_bracketed_ipv6() -> None:
    assert parse_address("xmpp1.a.test:5348") == ServerAddress("xmpp1.a.test", 5348)
    assert parse_address(" xmpp1.a.test ") == ServerAddress("xmpp1.a.test", 5347)
    assert parse_address("[::1]:5349") == ServerAddress("::1", 5349)
    assert str(ServerAddress("::1", 5349)) == "[::1]:5349" and str(ONE) == "127.0.18.250:5347"


@pytest.mark.parametrize(("text", "problem"), [
    (":5347", "no host"), ("a.test:0", "not a TCP port"), ("a.test:x", "not a TCP port"),
    ("::1:5347", "brackets"), ("[::1", "brackets"), ("[::1]5347", "brackets"),
])
def test_bad_addresses_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_address(text)


def test_a_failure_moves_to_the_next_server_and_the_delay_grows_per_round() -> None:
    rotation = Rotation((ONE, TWO, THREE))
    assert rotation.current == ONE
    first_round = [rotation.failed() for _ in range(3)]
    assert rotation.current == ONE  # all three tried: back to the first
    assert all(delay <= 1.0 for delay in first_round)  # a dead node is left at once
    second_round = [rotation.failed() for _ in range(3)]
    assert all(1.0 <= delay <= 2.0 for delay in second_round)
    assert rotation.current == ONE and rotation.failures == 6
    rotation.connected()
    assert rotation.failures == 0 and rotation.failed() <= 1.0 and rotation.current == TWO


def test_a_lone_server_backs_off_on_every_failure_up_to_the_cap() -> None:
    rotation = Rotation((ONE,))
    delays = [rotation.failed() for _ in range(12)]
    assert rotation.current == ONE and delays[0] <= 1.0 < delays[2]
    assert max(delays) <= RECONNECT_MAX_DELAY


def test_the_single_server_form_still_works(tmp_path: Path, base: dict) -> None:  # noqa: F811
    assert load_config(write(tmp_path, base)).servers == (ServerAddress("127.0.0.1", 5347),)
    del base["component"]["server"]
    assert load_config(write(tmp_path, base)).servers == (ServerAddress("127.0.0.1", 5347),)  # defaults


def test_a_server_list_keeps_its_order(tmp_path: Path, base: dict) -> None:  # noqa: F811
    del base["component"]["server"]
    base["component"]["servers"] = ["127.0.18.250:5347", {"host": "127.0.18.251"}, "[::1]:5400"]
    assert load_config(write(tmp_path, base)).servers == (ONE, TWO, ServerAddress("::1", 5400))


@pytest.mark.parametrize(("servers", "key", "problem"), [
    ([], "component.servers", "at least one server"),
    ("127.0.18.250:5347", "component.servers", "must be a list"),
    (["127.0.18.250:5347", "127.0.18.250:5347"], "component.servers[1]", "listed twice"),
    (["127.0.18.250:99999"], "component.servers[0]", "not a TCP port number in '127.0.18.250:99999'"),
    ([5347], "component.servers[0]", "must be host:port"),
    ([{"port": 5347}], "component.servers[0]", "mapping with host and port"),
    ([{"host": "a.test", "port": "x"}], "component.servers[0]", "not a TCP port"),
])
def test_bad_server_lists_name_the_entry(tmp_path: Path, base: dict, servers: object, key: str,  # noqa: F811
                                         problem: str) -> None:
    del base["component"]["server"]
    base["component"]["servers"] = servers
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, base))
    assert f"{key}: " in str(error.value) and problem in str(error.value)


def test_server_and_servers_together_are_refused(tmp_path: Path, base: dict) -> None:  # noqa: F811
    base["component"]["servers"] = ["127.0.18.250:5347"]
    with pytest.raises(ConfigError, match="component.servers: give component.server .* not both"):
        load_config(write(tmp_path, base))
