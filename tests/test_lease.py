"""The lease's rules (``xmppbridge.lease``): who may act, when to confirm, when to fence, and that the
default terms leave no window for two active instances."""

from __future__ import annotations

import pytest

from xmppbridge.lease import (
    TERMS,
    Lease,
    LeaseTerms,
    Role,
    ServerKeepalive,
    Step,
    lease_key,
    lock_halves,
    valid_instance_name,
)


def test_a_standby_tries_every_retry_interval_and_may_not_act() -> None:
    lease = Lease()
    assert lease.role is Role.STANDBY
    assert lease.next_step(0.0) == (Step.ACQUIRE, TERMS.retry)
    assert not lease.may_act(0.0) and lease.remaining(0.0) == 0.0


def test_an_active_instance_confirms_every_check_interval() -> None:
    lease = Lease()
    lease.acquired(100.0)
    assert lease.role is Role.ACTIVE and lease.takeovers == 1
    assert lease.next_step(100.0) == (Step.CONFIRM, TERMS.check)
    assert lease.next_step(100.4) == (Step.CONFIRM, pytest.approx(TERMS.check - 0.4))
    lease.confirmed(101.0)
    assert lease.next_step(101.0) == (Step.CONFIRM, TERMS.check)
    assert lease.may_act(101.0 + TERMS.valid_for - 0.01)


def test_unconfirmed_for_valid_for_seconds_it_fences() -> None:
    lease = Lease()
    lease.acquired(0.0)
    assert lease.may_act(TERMS.valid_for - 0.001)
    assert not lease.may_act(TERMS.valid_for)
    assert lease.next_step(TERMS.valid_for) == (Step.FENCE, 0.0)
    lease.lost()
    assert lease.role is Role.STANDBY and lease.next_step(10.0)[0] is Step.ACQUIRE


def test_validity_counts_from_when_a_confirmation_was_asked() -> None:
    """A slow answer must not stretch the validity: the server counts from our last packet."""
    lease = Lease()
    lease.acquired(0.0)
    lease.confirmed(1.0)  # asked at 1.0, answered whenever
    assert lease.remaining(2.5) == pytest.approx(TERMS.valid_for - 1.5)
    lease.confirmed(0.5)  # an older confirmation answered late moves nothing back
    assert lease.remaining(2.5) == pytest.approx(TERMS.valid_for - 1.5)


def test_a_confirmation_on_standby_does_not_make_it_active() -> None:
    lease = Lease()
    lease.confirmed(1.0)
    assert lease.role is Role.STANDBY and not lease.may_act(1.0)
    lease.acquired(2.0)
    lease.lost()
    lease.confirmed(3.0)  # a stuck confirmation answered after the fence
    assert not lease.may_act(3.0)


def test_default_terms_fence_before_the_server_can_free_the_lock_and_take_over_within_ten_seconds() -> None:
    assert TERMS.valid_for < TERMS.server.soonest_release
    assert TERMS.takeover_bound < 10.0


def test_terms_that_would_let_two_act_are_refused() -> None:
    with pytest.raises(ValueError, match="soonest release"):
        LeaseTerms(valid_for=6.0)
    with pytest.raises(ValueError):
        LeaseTerms(check=3.0, valid_for=3.0)
    with pytest.raises(ValueError):
        LeaseTerms(valid_for=3.0, server=ServerKeepalive(idle=1, interval=1, count=1, user_timeout_ms=2000))


def test_linux_user_timeout_decides_keepalive_failure() -> None:
    """tcp(7): with TCP_USER_TIMEOUT set it, not the probe count, ends an unanswered connection."""
    server = ServerKeepalive(idle=2, interval=1, count=9, user_timeout_ms=5000)
    assert server.soonest_release == 5.0 and server.latest_release == 11.0
    assert ServerKeepalive(idle=2, interval=1, count=3, user_timeout_ms=5000).latest_release == 6.0


def test_lease_key_is_a_stable_signed_64_bit_number_per_bridge() -> None:
    key = lease_key("bridge.b.test")
    assert key == lease_key("Bridge.B.Test")
    assert key != lease_key("bridge.a.test")
    assert -(2**63) <= key < 2**63
    high, low = lock_halves(key)
    assert (high << 32 | low) == key & (2**64 - 1) and 0 <= high < 2**32 and 0 <= low < 2**32
    assert lock_halves(-1) == (2**32 - 1, 2**32 - 1)


@pytest.mark.parametrize(("name", "ok"), [("db1:4711", True), ("bridge-a.example", True), ("", False),
                                          ("two words", False), ("tab\there", False), ("x" * 101, False)])
def test_instance_names(name: str, ok: bool) -> None:
    assert (valid_instance_name(name) is None) is ok
