"""The feed's doors, in process: a password flood is refused without scrypt once it is blocked, the right
password works after the backoff, at most one password is hashed at a time, and /metrics and the
detailed /healthz are for operators only (operator users, or the loopback operator listener)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.test_config import write
from tests.test_feed_support import TOKEN, TOOL, basic, settings
from tests.test_throttle import Clock
from xmppbridge.config.settings import load_config
from xmppbridge.errors import ConfigError
from xmppbridge.feed import auth
from xmppbridge.feed.access import User
from xmppbridge.feed.app import make_app, store_health
from xmppbridge.feed.auth import hash_password
from xmppbridge.feed.throttle import Throttle, ThrottleSettings
from xmppbridge.policy.rights import Rights
from xmppbridge.process.metrics import BridgeMetrics, operator_app
from xmppbridge.signing.keys import generate_identity_files
from xmppbridge.store import Store

READER = User("reader", Rights.parse(["all"]), password_hash=hash_password("reader-pw", n=2**8))
OPERATOR = User("ops", Rights.parse(["public"]), password_hash=hash_password("ops-pw", n=2**8), operator=True)
BACKOFF = ThrottleSettings(free_failures=5, first_block=1.0, max_block=300.0, quiet=900.0, tarpit=0.0)


@dataclass
class Door:
    client: TestClient
    clock: Clock
    throttle: Throttle
    metrics: BridgeMetrics
    hashed: list[str]  # user names scrypt ran for


@pytest.fixture
async def door(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Door]:
    hashed: list[str] = []
    real = auth.verify_password

    def counting(password: str, encoded: str) -> bool:
        hashed.append(encoded)
        return real(password, encoded)

    monkeypatch.setattr(auth, "verify_password", counting)
    with Store(tmp_path / "s.sqlite") as store:
        clock = Clock()
        throttle = Throttle(BACKOFF, clock=clock)
        metrics = BridgeMetrics(store)
        metrics.watch_logins(throttle.stats)
        app = make_app(store, settings(users=(READER, OPERATOR, TOOL)), throttle=throttle,
                       metrics=metrics.scrape, health=lambda: {**store_health(store), "ready": True})
        async with TestClient(TestServer(app)) as client:
            yield Door(client, clock, throttle, metrics, hashed)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_fifty_wrong_passwords_are_blocked_without_scrypt_and_the_right_one_works_later(
        door: Door, caplog: pytest.LogCaptureFixture) -> None:
    statuses, retry_after = [], set()
    for n in range(50):
        response = await door.client.get("/feeds/partner", headers=basic("reader", f"guess-{n}"))
        statuses.append(response.status)
        if response.status == 429:
            retry_after.add(int(response.headers["Retry-After"]))
    assert statuses == [401] * 5 + [429] * 45
    assert retry_after == {1}  # the first block: 1 s
    assert len(door.hashed) == 5  # the blocked 45 cost no scrypt
    # Blocked means unheard: not even the right password gets in, and it costs nothing either.
    assert (await door.client.get("/feeds/partner", headers=basic("reader", "reader-pw"))).status == 429
    assert len(door.hashed) == 5

    door.clock.now += 1.0  # the backoff is over
    assert (await door.client.get("/feeds/partner", headers=basic("reader", "reader-pw"))).status == 200
    assert (await door.client.get("/feeds/partner", headers=basic("reader", "wrong"))).status == 401  # reset

    text = caplog.text
    assert "login failed: client 127.0.0.1, user 'reader', reason password" in text
    assert "login blocked: client 127.0.0.1 refused for 1 s after 5 failures" in text
    assert "login blocked: user 'reader' refused for 1 s after 5 failures" in text
    assert "guess-" not in text and "reader-pw" not in text  # never what was sent as a password

    found = samples(door.metrics.exposition().decode())
    assert found[("xmppbridge_auth_failures_total", (("reason", "password"),))] == 6
    assert found[("xmppbridge_auth_blocks_total", (("scope", "client"),))] == 1
    assert found[("xmppbridge_auth_blocks_total", (("scope", "user"),))] == 1
    assert found[("xmppbridge_auth_refused_total", ())] == 46


async def test_wrong_tokens_and_unknown_names_count_against_the_client(door: Door) -> None:
    for n in range(3):
        bad = {"Authorization": f"Bearer not-{n}"}
        assert (await door.client.get("/feeds/partner", headers=bad)).status == 401
    for n in range(2):
        assert (await door.client.get("/feeds/partner", headers=basic(f"nobody{n}", "x"))).status == 401
    assert door.hashed == []  # neither costs scrypt
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert (await door.client.get("/feeds/partner", headers=good)).status == 429
    door.clock.now += 1.0
    assert (await door.client.get("/feeds/partner", headers=good)).status == 200
    assert dict(door.throttle.stats.failures) == {"token": 3, "unknown-user": 2}


async def test_behind_a_trusted_proxy_each_client_counts_apart(tmp_path: Path) -> None:
    """One guesser behind the proxy blocks itself, not every client behind it."""
    with Store(tmp_path / "s.sqlite") as store:
        backoff = ThrottleSettings(tarpit=0.0, trusted_proxies=frozenset({"127.0.0.1"}))
        app = make_app(store, settings(users=(READER,), throttle=backoff))
        async with TestClient(TestServer(app)) as client:
            def guess(name: str, forwarded: str) -> dict[str, str]:  # a new name each time: the client counts
                return {**basic(name, "x"), "X-Forwarded-For": forwarded}

            for n in range(5):
                response = await client.get("/feeds/partner", headers=guess(f"n{n}", "198.51.100.7"))
                assert response.status == 401
            assert (await client.get("/feeds/partner", headers=guess("n5", "198.51.100.7"))).status == 429
            reader = {**basic("reader", "reader-pw"), "X-Forwarded-For": "198.51.100.8"}
            assert (await client.get("/feeds/partner", headers=reader)).status == 200
            # A forged entry left of the proxy's own changes nothing: still the guesser's address.
            forged = guess("n6", "203.0.113.1, 198.51.100.7")
            assert (await client.get("/feeds/partner", headers=forged)).status == 429


async def test_without_trusted_proxies_the_header_is_ignored(door: Door) -> None:
    for n in range(5):
        spoofed = {**basic(f"n{n}", "x"), "X-Forwarded-For": f"198.51.100.{n}"}
        assert (await door.client.get("/feeds/partner", headers=spoofed)).status == 401
    assert (await door.client.get("/feeds/partner", headers=basic("n5", "x"))).status == 429


async def test_at_most_one_password_is_hashed_at_a_time(door: Door, monkeypatch: pytest.MonkeyPatch) -> None:
    busy, most, lock = 0, 0, threading.Lock()
    counting = auth.verify_password

    def slow(password: str, encoded: str) -> bool:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        time.sleep(0.02)  # long enough for the others to pile up, if they could
        with lock:
            busy -= 1
        return counting(password, encoded)

    monkeypatch.setattr(auth, "verify_password", slow)
    statuses = await asyncio.gather(*(door.client.get("/feeds/partner", headers=basic("reader", f"g{n}"))
                                      for n in range(8)))
    assert sorted(r.status for r in statuses) == [401] * 8  # all admitted before the first failed
    assert most == 1 and len(door.hashed) == 8


async def test_an_anonymous_reader_gets_no_metrics_and_only_up(door: Door) -> None:
    response = await door.client.get("/metrics")
    assert response.status == 404
    response = await door.client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "up"}


async def test_a_reader_without_the_operator_flag_neither(door: Door) -> None:
    headers = basic("reader", "reader-pw")
    assert (await door.client.get("/metrics", headers=headers)).status == 404
    assert await (await door.client.get("/healthz", headers=headers)).json() == {"status": "up"}


async def test_an_operator_user_gets_metrics_and_the_detailed_health(door: Door) -> None:
    headers = basic("ops", "ops-pw")
    response = await door.client.get("/metrics", headers=headers)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain; version=")
    assert ("xmppbridge_outbox_depth", ()) in samples(await response.text())
    health = await (await door.client.get("/healthz", headers=headers)).json()
    assert health == {"status": "ok", "entries": 0, "rejects": 0, "ready": True}


async def test_the_operator_listener_serves_both_without_login(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        metrics = BridgeMetrics(store)
        metrics.watch_logins(Throttle().stats)
        probe: Callable[[], dict[str, object]] = lambda: {**store_health(store), "ready": False}  # noqa: E731
        async with TestClient(TestServer(operator_app(metrics, probe))) as client:
            found = samples(await (await client.get("/metrics")).text())
            health = await (await client.get("/healthz")).json()
        async with TestClient(TestServer(operator_app(None, probe))) as client:  # metrics.enabled: false
            assert (await client.get("/metrics")).status == 404
            assert (await client.get("/healthz")).status == 200
    assert found[("xmppbridge_auth_failures_total", (("reason", "password"),))] == 0
    assert health == {"status": "ok", "entries": 0, "rejects": 0, "ready": False}


# -- settings ------------------------------------------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    """A complete config, as tests/test_config.py has it."""
    generate_identity_files("test", tmp_path / "k.pem", tmp_path / "c.pem")
    return {
        "component": {"jid": "bridge.a.test", "secret": "s", "server": {"host": "127.0.0.1", "port": 5347}},
        "pubsub": {"service": "pubsub.a.test"}, "signing": {"key": "k.pem", "cert": "c.pem"},
        "trust": {"anchors": ["c.pem"]}, "subscriptions": [{"service": "pubsub.b.test", "nodes": "all"}],
        "store": {"path": "data/x.sqlite"}, "feed": {"listen": "127.0.0.1:8080"},
    }


def test_the_defaults_are_the_safe_ones(tmp_path: Path, base: dict) -> None:
    config = load_config(write(tmp_path, base))
    assert config.feed.throttle == ThrottleSettings()
    assert config.operators.metrics_listen == ("127.0.0.1", 9180)


def test_backoff_operators_and_the_operator_listener_are_configurable(tmp_path: Path, base: dict) -> None:
    base["feed"] |= {"login_backoff": {"free_failures": 3, "max_block": 60, "quiet": 600, "hash_slots": 2,
                                       "trusted_proxies": ["127.0.0.1"]},
                     "users": {"ops": {"password_hash": OPERATOR.password_hash, "operator": True},
                               "reader": {"password_hash": READER.password_hash, "read": ["all"]}}}
    base["metrics"] = {"listen": "[::1]:9999"}
    config = load_config(write(tmp_path, base))
    assert config.feed.throttle == ThrottleSettings(free_failures=3, max_block=60.0, quiet=600.0,
                                                    hash_slots=2, trusted_proxies=frozenset({"127.0.0.1"}))
    assert {u.name: u.operator for u in config.feed.users} == {"ops": True, "reader": False}
    assert config.operators.metrics_listen == ("::1", 9999)
    base["metrics"] = {"listen": None}
    assert load_config(write(tmp_path, base)).operators.metrics_listen is None


@pytest.mark.parametrize(("change", "key", "problem"), [
    (lambda c: c["feed"].update(login_backoff={"attempts": 3}), "feed.login_backoff", "unknown key(s)"),
    (lambda c: c["feed"].update(login_backoff={"hash_slots": 0}), "feed.login_backoff", "hash_slots must be"),
    (lambda c: c["feed"].update(login_backoff={"tarpit": True}), "feed.login_backoff.tarpit", "a number"),
    (lambda c: c["feed"].update(login_backoff={"trusted_proxies": "x"}), "feed.login_backoff.trusted_proxies",
     "must be a list"),
    (lambda c: c["feed"].update(login_backoff={"trusted_proxies": ["proxy"]}), "feed.login_backoff",
     "does not appear to be an IPv4 or IPv6 address"),
    (lambda c: c.update(metrics={"listen": "0.0.0.0:9180"}), "metrics.listen", "not a loopback address"),
    (lambda c: c.update(metrics={"listen": "9180"}), "metrics.listen", "host:port"),
])
def test_bad_door_settings_name_the_key(tmp_path: Path, base: dict, change, key: str, problem: str) -> None:
    change(base)
    path = write(tmp_path, base)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {key}: ") and problem in str(caught.value), caught.value
