"""The failed-login backoff's decisions, on an injected clock: when a client or a user name is blocked,
for how long, when it is forgiven, and that its tables stay bounded."""

from __future__ import annotations

import pytest

from xmppbridge.feed.throttle import CLIENT, USER, Throttle, ThrottleSettings, client_address, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(**changes: object) -> tuple[Throttle, Clock]:
    clock = Clock()
    return Throttle(ThrottleSettings(**changes), clock=clock), clock  # type: ignore[arg-type]


def fail(t: Throttle, times: int, client: str = "192.0.2.1", user: str | None = "analyst") -> None:
    for _ in range(times):
        assert t.admit(client, user) == 0
        t.failed(client, user, "password")


def test_free_failures_then_a_block_that_doubles_up_to_the_cap() -> None:
    t, clock = throttle(free_failures=3, first_block=1.0, max_block=10.0, quiet=60.0)
    fail(t, 2)
    assert t.admit("192.0.2.1", "analyst") == 0
    blocks = t.failed("192.0.2.1", "analyst", "password")  # the third: both keys blocked for 1 s
    assert {(b.scope, b.seconds, b.failures) for b in blocks} == {(CLIENT, 1.0, 3), (USER, 1.0, 3)}
    assert t.admit("192.0.2.1", "analyst") == 1.0
    waits = []
    for _ in range(5):
        clock.now += t.admit("192.0.2.1", "analyst")  # wait the block out, then fail again
        assert t.admit("192.0.2.1", "analyst") == 0
        waits.append(t.failed("192.0.2.1", "analyst", "password")[0].seconds)
    assert waits == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_blocked_attempt_is_refused_and_counted_unheard() -> None:
    t, _ = throttle(free_failures=2)
    fail(t, 2)
    assert t.admit("192.0.2.1", "analyst") > 0
    assert t.admit("192.0.2.1", None) > 0  # a bearer token from that client too
    assert t.stats.refused == 2
    assert t.stats.failures == {"password": 2}
    assert t.stats.blocks == {CLIENT: 1, USER: 1}


def test_success_clears_both_keys() -> None:
    t, clock = throttle(free_failures=3)
    fail(t, 2)
    t.succeeded("192.0.2.1", "analyst")
    fail(t, 2)  # two free failures again, not a block
    assert t.admit("192.0.2.1", "analyst") == 0


def test_a_quiet_period_forgets_and_the_backoff_starts_low_again() -> None:
    t, clock = throttle(free_failures=2, first_block=1.0, max_block=100.0, quiet=300.0)
    fail(t, 2)
    for _ in range(5):
        clock.now += t.admit("192.0.2.1", "analyst")
        t.failed("192.0.2.1", "analyst", "password")
    assert t.admit("192.0.2.1", "analyst") == 32.0
    clock.now += 300.0
    assert t.admit("192.0.2.1", "analyst") == 0
    assert t.failed("192.0.2.1", "analyst", "password") == []  # counted from one again


def test_many_clients_guessing_one_user_are_stopped_by_the_user_key() -> None:
    t, _ = throttle(free_failures=3)
    for n in range(3):
        fail(t, 1, client=f"198.51.100.{n}")
    assert t.admit("198.51.100.99", "analyst") > 0  # a fresh client, the same name
    assert t.admit("198.51.100.99", "other") == 0


def test_the_user_who_logged_in_from_there_before_is_not_locked_out_by_strangers() -> None:
    t, _ = throttle(free_failures=3)
    t.succeeded("192.0.2.7", "analyst")
    for n in range(3):
        fail(t, 1, client=f"198.51.100.{n}")
    assert t.admit("198.51.100.50", "analyst") > 0
    assert t.admit("192.0.2.7", "analyst") == 0  # known pair: only its own client key counts
    fail(t, 3, client="192.0.2.7")  # ... and that one still blocks it
    assert t.admit("192.0.2.7", "analyst") > 0


def test_one_client_trying_many_names_is_stopped_by_the_client_key() -> None:
    t, _ = throttle(free_failures=4)
    for n in range(4):
        fail(t, 1, user=f"user{n}")
    assert t.admit("192.0.2.1", "someone-else") > 0
    assert t.admit("192.0.2.2", "someone-else") == 0


def test_tables_are_capped_forgetting_the_least_recently_failed() -> None:
    t, clock = throttle(free_failures=1, max_entries=3)
    for n in range(10):
        clock.now += 0.001
        t.failed(f"203.0.113.{n}", f"user{n}", "unknown-user")
        t.succeeded(f"198.51.100.{n}", f"user{n}")
    assert all(len(table) <= 3 for table in t._tables.values()) and len(t._known) <= 3
    assert t.admit("203.0.113.9", None) > 0  # the newest are kept
    assert t.admit("203.0.113.0", None) == 0  # the oldest forgotten: more lenient, never wrong


@pytest.mark.parametrize(("remote", "key"), [
    ("192.0.2.1", "192.0.2.1"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same /64: one client
    ("::ffff:192.0.2.1", "192.0.2.1"),
    (None, "unknown"),
    ("not an address", "unknown"),
])
def test_client_keys(remote: str | None, key: str) -> None:
    assert client_key(remote) == key


@pytest.mark.parametrize("changes", [
    {"free_failures": 0},
    {"first_block": 0},
    {"first_block": 500.0},
    {"quiet": 10.0},  # shorter than max_block: a block could be forgotten while running
    {"hash_slots": 0},
    {"tarpit": -1.0},
])
def test_settings_refuse_nonsense(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ThrottleSettings(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("peer", "forwarded", "key"), [
    ("192.0.2.1", None, "192.0.2.1"),
    ("192.0.2.1", "198.51.100.7", "192.0.2.1"),  # not a trusted proxy: its header means nothing
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client wrote the left one
    ("127.0.0.1", "198.51.100.7, 10.0.0.2", "198.51.100.7"),  # through two trusted proxies
    ("127.0.0.1", "10.0.0.2", "10.0.0.2"),  # trusted all the way: the last one named
])
def test_behind_trusted_proxies_the_nearest_untrusted_address_counts(peer: str, forwarded: str | None,
                                                                      key: str) -> None:
    trusted = ThrottleSettings(trusted_proxies=frozenset({"127.0.0.1", "10.0.0.2"})).trusted_proxies
    assert client_address(peer, forwarded, trusted) == key


def test_trusted_proxies_are_addresses() -> None:
    assert ThrottleSettings(trusted_proxies=frozenset({"::0001"})).trusted_proxies == {"::1"}
    with pytest.raises(ValueError, match="trusted_proxies"):
        ThrottleSettings(trusted_proxies=frozenset({"proxy.example"}))
