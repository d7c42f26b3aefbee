"""The shell of ``lease``: who holds the store's lease, and the active/standby loop of ``xmppbridge run``.

Two holders, one per store backend:

- ``AdvisoryLease`` (``store.url``): ``pg_try_advisory_lock`` on a session of its own. The lock lives as
  long as the session; the server frees it when the holder's process dies or, via the TCP keepalives and
  user timeout set on the session (``lease.ServerKeepalive``), when its machine vanishes. The session
  must reach PostgreSQL directly or through a session-mode pooler: a transaction-mode pooler (pgbouncer's
  ``pool_mode = transaction``) hands session locks to strangers.
- ``FileLease`` (``store.path``): an exclusive ``flock`` on ``<store>.lease`` beside the SQLite file. The
  kernel frees it when the process dies. Lock files are never removed: removing one would let a second
  instance lock a new file of the same name while the first still holds the old one (``confirm`` notices
  a replaced file and fences).

The holders block (network, locks), so they run on one thread of their own, one call at a time; the
event loop only waits for their answers, never longer than the lease allows (``lease.Lease``).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from xmppbridge import lease
from xmppbridge.config.settings import Config
from xmppbridge.lease import (
    STATE_KEY,
    TERMS,
    Lease,
    LeaseTerms,
    Role,
    Step,
    lease_key,
    lease_path,
    lock_halves,
    recorded_active,
)
from xmppbridge.store.contracts import BridgeState

log = logging.getLogger(__name__)

T = TypeVar("T")
RELEASE_WAIT = 10.0  # seconds a stopping instance waits for its lease to be given up
WATCH_INTERVAL = 0.25  # seconds between the watchdog's looks at the lease (Leadership._watch)


class LeaseLost(Exception):
    """The lease is no longer ours (or can no longer be shown to be)."""


class LeaseHolder(Protocol):
    description: str

    def acquire(self) -> bool:
        """Try once, without waiting for the current holder: True if the lease is now ours."""
        ...

    def confirm(self) -> None:
        """Raise ``LeaseLost`` unless the lease is still ours."""
        ...

    def release(self) -> None:
        """Give the lease up (nothing if not held); also after it was lost."""
        ...


class FileLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"flock on {path}"
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if not self._same_file(fd):  # removed or replaced between our open and our lock: not the lease
            os.close(fd)
            return False
        self._fd = fd
        return True

    def confirm(self) -> None:
        if self._fd is None:
            raise LeaseLost("not held")
        if not self._same_file(self._fd):
            raise LeaseLost(f"{self.path} was removed or replaced; another instance may lock the new one")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor frees the flock
            self._fd = None

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


class AdvisoryLease:
    """``pg_try_advisory_lock(key)`` on a dedicated autocommit session (psycopg 3)."""

    def __init__(self, url: str, key: int, instance: str, terms: LeaseTerms = TERMS) -> None:
        self.url, self.key, self.terms = url, key, terms
        self.instance = instance
        self.description = f"PostgreSQL advisory lock {key}"
        self._conn: Any = None  # psycopg.Connection while we have a session

    def _connect(self) -> Any:
        import psycopg  # only PostgreSQL deployments need it

        # Our side: find a dead server within the lease's validity, so that a call stuck on a vanished
        # network returns (the loop has fenced already; this frees the thread).
        conn = psycopg.connect(
            self.url, autocommit=True, connect_timeout=max(1, int(self.terms.valid_for)),
            **lease.client_keepalive(self.terms), application_name=f"xmppbridge lease {self.instance}"[:63])
        # The server's side: how soon it frees the lock of a holder whose machine is gone.
        for setting, value in (*lease.server_keepalive(self.terms).items(),
                               ("statement_timeout", int(self.terms.valid_for * 1000))):
            conn.execute(f"SET {setting} = {int(value)}")
        return conn

    def acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error:
            self.release()
            raise
        return bool(row and row[0])

    def confirm(self) -> None:
        import psycopg

        if self._conn is None:
            raise LeaseLost("no session")
        high, low = lock_halves(self.key)
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                " AND classid = %s AND objid = %s AND objsubid = 1 AND granted", (high, low)).fetchone()
        except psycopg.Error as exc:
            raise LeaseLost(f"the lease session failed: {exc}".strip()) from None
        if not row or not row[0]:
            raise LeaseLost("the session no longer holds the lock")

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # ending the session frees its advisory locks
            except Exception:  # noqa: BLE001 - a broken session is gone anyway
                log.debug("closing the lease session failed", exc_info=True)


def holder_for(config: Config) -> LeaseHolder:
    if config.store_url is not None:
        return AdvisoryLease(config.store_url, lease_key(config.jid), config.instance_name)
    return FileLease(lease_path(config.store_path))


class Leadership:
    """Runs ``act`` while this instance holds the lease, stands by otherwise, until ``until`` is set.

    ``fence`` is called, before ``act`` is cancelled, when the lease is lost or can no longer be
    confirmed: it must stop everything that acts for the bridge at once (the XMPP connection). On a
    normal stop ``act`` is only cancelled, and may finish its work; the lease is given up after it.
    """

    def __init__(self, holder: LeaseHolder, store: BridgeState, instance: str, terms: LeaseTerms = TERMS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.holder, self.store, self.instance = holder, store, instance
        self.lease = Lease(terms)
        self.clock = clock
        self._stop_watch = threading.Event()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self._complaint: str | None = None  # the last acquisition error logged, to log each once

    @property
    def active(self) -> bool:
        return self.lease.may_act(self.clock())

    def report(self) -> dict[str, object]:
        """For ``/healthz``: this instance, its role, and the active instance the store names."""
        return {"instance": self.instance, "role": str(Role.ACTIVE if self.active else Role.STANDBY),
                **recorded_active(self.store.state())}

    def _call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run a holder call on the lease thread, after any call still running there."""
        return asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def run(self, act: Callable[[], Awaitable[None]], fence: Callable[[], None],
                  until: asyncio.Event, sever: Callable[[], None] = lambda: None) -> None:
        """``sever``: cut what acts for the bridge from any thread (the XMPP socket), for the watchdog."""
        stop = asyncio.ensure_future(until.wait())
        watchdog = threading.Thread(target=self._watch, args=(sever,), name="lease-watchdog", daemon=True)
        watchdog.start()
        try:
            while await self._stand_by(stop):
                await self._lead(act, fence, stop)
        finally:
            self._stop_watch.set()
            stop.cancel()
            release = self._call(self.holder.release)
            await asyncio.wait({release}, timeout=RELEASE_WAIT)
            self._thread.shutdown(wait=False)

    async def _stand_by(self, stop: asyncio.Future[Any]) -> bool:
        """Try for the lease every ``retry`` seconds: True once it is ours, False when stopped."""
        waiting_logged = False
        while not stop.done():
            asked = self.clock()
            attempt = self._call(self.holder.acquire)
            await asyncio.wait({attempt, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop.done():
                return False
            try:
                if attempt.result():
                    self._complaint = None
                    self.lease.acquired(asked)
                    return True
            except Exception as exc:  # noqa: BLE001 - e.g. the database unreachable: keep trying
                if str(exc) != self._complaint:
                    self._complaint = str(exc)
                    log.warning("cannot try for the lease (%s): %s; trying every %.0f s",
                                self.holder.description, exc, self.lease.terms.retry)
            else:
                if not waiting_logged:
                    waiting_logged = True
                    recorded = self._recorded()
                    log.info("standby: the lease (%s) is held%s; serving the feed and trying every %.0f s",
                             self.holder.description, f" by {recorded}" if recorded else "",
                             self.lease.terms.retry)
            await asyncio.wait({stop}, timeout=self.lease.terms.retry)
        return False

    async def _lead(self, act: Callable[[], Awaitable[None]], fence: Callable[[], None],
                    stop: asyncio.Future[Any]) -> None:
        """Act until stopped or until the lease is lost (then fence). An ``act`` that fails ends it all."""
        try:
            self.store.set_state(STATE_KEY, self.instance)
        except Exception:  # noqa: BLE001 - only a record for status; the lease is what counts
            log.exception("could not record %s as the active instance", self.instance)
        log.info("took the lease (%s): %s is the active instance", self.holder.description, self.instance)
        acting = asyncio.ensure_future(act())
        try:
            while True:
                step, wait = self.lease.next_step(self.clock())
                if step is Step.FENCE:
                    log.error("the lease could not be confirmed for %.0f s: stopping at once (fencing) and "
                              "standing by", self.lease.terms.valid_for)
                    fence()
                    return
                await asyncio.wait({acting, stop}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if stop.done():
                    return
                if acting.done():
                    acting.result()  # raises what ended it
                    raise RuntimeError("the active instance's work ended on its own")
                asked = self.clock()
                confirmation = self._call(self.holder.confirm)
                await asyncio.wait({confirmation}, timeout=self.lease.remaining(self.clock()))
                if not confirmation.done():
                    continue  # next_step fences now
                try:
                    confirmation.result()
                except LeaseLost as exc:
                    log.error("lost the lease (%s): %s; stopping at once (fencing) and standing by",
                              self.holder.description, exc)
                    fence()
                    return
                self.lease.confirmed(asked)
        finally:
            acting.cancel()
            await asyncio.gather(acting, return_exceptions=True)
            self.lease.lost()
            self._call(self.holder.release)  # after a confirmation still stuck, if any

    def _watch(self, sever: Callable[[], None]) -> None:
        """Fence on time even when the event loop is stuck (a store call waiting on a vanished network
        blocks it for seconds at a time, and ``_lead`` runs on it): once the lease is past its validity
        and still not given up, sever the connection from here. ``_lead`` fences properly when the loop
        gets on."""
        severed_term: int | None = None  # the takeover whose term was severed, to sever each once
        while not self._stop_watch.wait(WATCH_INTERVAL):
            lease = self.lease
            overdue = lease.role is Role.ACTIVE and not lease.may_act(self.clock())
            if overdue and severed_term != lease.takeovers:
                severed_term = lease.takeovers
                log.error("the lease could not be confirmed for %.0f s and the event loop is busy: severing "
                          "the XMPP connection, stopping at once (fencing)", lease.terms.valid_for)
                try:
                    sever()
                except Exception:  # noqa: BLE001 - _lead still fences when the loop gets on
                    log.exception("severing the connection failed")

    def _recorded(self) -> str | None:
        try:
            recorded = self.store.state().get(STATE_KEY)
        except Exception:  # noqa: BLE001 - only for the log line
            return None
        return None if recorded is None else f"{recorded[0]} (since {recorded[1]:%Y-%m-%d %H:%M:%S}Z)"
