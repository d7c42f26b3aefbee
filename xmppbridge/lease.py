"""Leadership of ``xmppbridge run`` over one store (issue 16): the rules, without any I/O.

Several ``run`` instances may share one store (a PostgreSQL database, or one SQLite file on one machine).
Exactly one of them acts: holds the XMPP component connection, drains the outbox, mirrors. It is the one
holding the store's lease (``leadership``: a PostgreSQL advisory lock, or an ``flock`` on a file beside
the SQLite store). The others stand by, serving the feed from the shared store, and try for the lease
every ``retry`` seconds.

An active instance must stop acting *before* anyone else can get the lease, or two would publish and
mirror at once. A PostgreSQL server frees a lock when it finds its session dead: at once when the
holder's process dies (its kernel closes the socket), after its TCP keepalives or user timeout when the
holder's machine is gone. So the holder confirms its lock every ``check`` seconds and, when it has not
managed to for ``valid_for`` seconds, stops acting (fencing) whatever its connection still claims.
``valid_for`` is shorter than the soonest the server may free the lock (``server_release``): the server
counts from the last packet it got from the holder, which is no earlier than the holder's last
confirmation was sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

STATE_KEY = "active_instance"  # Store.set_state key: who took the lease, and when (its updated_at)


class Role(StrEnum):
    ACTIVE = "active"
    STANDBY = "standby"


class Step(StrEnum):
    """What the shell does next."""
    ACQUIRE = "acquire"  # standby: try for the lease
    CONFIRM = "confirm"  # active: check that the lease is still ours
    FENCE = "fence"  # active, unconfirmed for too long: stop acting now, then stand by


@dataclass(frozen=True)
class ServerKeepalive:
    """TCP settings for the server's side of the lease session (PostgreSQL's ``tcp_keepalives_*`` and
    ``tcp_user_timeout``, settable per session): how soon it finds a vanished holder and frees the lock.
    On Linux a user timeout also decides when keepalive probes have failed (tcp(7), TCP_USER_TIMEOUT)."""
    idle: int = 2  # seconds without traffic before the first probe
    interval: int = 1  # seconds between probes
    count: int = 3
    user_timeout_ms: int = 5000

    @property
    def soonest_release(self) -> float:
        """The earliest the server frees the lock after the holder's last packet."""
        return min(self.idle + self.interval * self.count, max(self.user_timeout_ms / 1000, self.idle))

    @property
    def latest_release(self) -> float:
        """The latest: the user timeout, checked at the next probe."""
        return max(self.idle + self.interval * self.count, self.user_timeout_ms / 1000 + self.interval)


@dataclass(frozen=True)
class LeaseTerms:
    retry: float = 1.0  # seconds between a standby's attempts
    check: float = 1.0  # seconds between an active instance's confirmations
    valid_for: float = 3.0  # seconds an active instance may act on without a confirmation
    server: ServerKeepalive = ServerKeepalive()

    def __post_init__(self) -> None:
        if not 0 < self.check < self.valid_for < self.server.soonest_release:
            raise ValueError("lease terms must have 0 < check < valid_for < the server's soonest release "
                             f"({self.check}, {self.valid_for}, {self.server.soonest_release})")

    @property
    def takeover_bound(self) -> float:
        """Worst case from the holder's machine vanishing to a standby holding the lock: the server's
        latest release plus one standby retry (a killed process is noticed at once instead)."""
        return self.server.latest_release + self.retry


TERMS = LeaseTerms()


def client_keepalive(terms: LeaseTerms = TERMS) -> dict[str, int]:
    """libpq connection parameters for every PostgreSQL session of a bridge: our side finds a vanished
    server within the lease's validity, so that a call stuck on it returns (and the event loop or thread
    it blocked gets on, to fence) instead of waiting for the kernel's retransmissions (~15 minutes)."""
    return {"keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1, "keepalives_count": 2,
            "tcp_user_timeout": int(terms.valid_for * 1000)}


def server_keepalive(terms: LeaseTerms = TERMS) -> dict[str, int]:
    """Session settings for the server's side (``SET``; PostgreSQL's defaults are the kernel's, 2 h
    idle): how soon it ends the session of a vanished machine, and frees what it held."""
    server = terms.server
    return {"tcp_keepalives_idle": server.idle, "tcp_keepalives_interval": server.interval,
            "tcp_keepalives_count": server.count, "tcp_user_timeout": server.user_timeout_ms}


class Lease:
    """One instance's view of the lease, fed by the shell with what happened and when (monotonic
    seconds). It says what to do next and whether the instance may act right now."""

    def __init__(self, terms: LeaseTerms = TERMS) -> None:
        self.terms = terms
        self.role = Role.STANDBY
        self.confirmed_at: float | None = None  # last time the lease was known ours (when it was asked)
        self.takeovers = 0

    def acquired(self, asked_at: float) -> None:
        self.role, self.confirmed_at = Role.ACTIVE, asked_at
        self.takeovers += 1

    def confirmed(self, asked_at: float) -> None:
        """The lease was ours when the confirmation was asked. Counting from when it was *asked*, not
        answered, keeps a slow answer from stretching the validity past what the server grants."""
        if self.role is Role.ACTIVE and self.confirmed_at is not None:
            self.confirmed_at = max(self.confirmed_at, asked_at)

    def lost(self) -> None:
        """The lease is gone (a failed confirmation, fencing, or given up): stand by."""
        self.role, self.confirmed_at = Role.STANDBY, None

    def may_act(self, now: float) -> bool:
        return self.role is Role.ACTIVE and self.remaining(now) > 0

    def remaining(self, now: float) -> float:
        """Seconds the active instance may still act without a new confirmation (0 on standby)."""
        if self.role is not Role.ACTIVE or self.confirmed_at is None:
            return 0.0
        return max(0.0, self.confirmed_at + self.terms.valid_for - now)

    def next_step(self, now: float) -> tuple[Step, float]:
        """The next step and the seconds to wait before it."""
        if self.role is Role.STANDBY:
            return Step.ACQUIRE, self.terms.retry
        if not self.may_act(now):
            return Step.FENCE, 0.0
        assert self.confirmed_at is not None
        return Step.CONFIRM, max(0.0, self.confirmed_at + self.terms.check - now)


def lease_key(jid: str) -> int:
    """The PostgreSQL advisory lock key of one bridge: a signed 64-bit number from its component JID,
    so that the bridges of several members may share a database server without sharing a lease."""
    digest = hashlib.sha256(b"xmppbridge run lease\0" + jid.lower().encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_halves(key: int) -> tuple[int, int]:
    """How ``pg_locks`` shows a bigint advisory key: ``classid`` the high 32 bits, ``objid`` the low
    (PostgreSQL docs, "pg_locks"), both as unsigned oids."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def valid_instance_name(name: str) -> str | None:
    """Why ``instance.name`` is not usable (it is a metrics label and a log word), or None."""
    if not name or len(name) > 100:
        return "must be 1 to 100 characters"
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        return "must have no spaces or control characters"
    return None


def lease_path(store_path: Path | str) -> Path:
    """The SQLite store's lease: a file beside it, held with flock."""
    return Path(f"{store_path}.lease")


def recorded_active(state: dict[str, tuple[str, datetime]]) -> dict[str, str | None]:
    """The active instance the store names (the last to take the lease) and since when, from
    ``Store.state()``: for ``/healthz`` and ``status``."""
    name, since = state.get(STATE_KEY, (None, None))
    return {"active_instance": name,
            "active_since": None if since is None else since.strftime("%Y-%m-%dT%H:%M:%SZ")}
