"""The store's connections and transactions, for either backend: what every concern of the store
(outbox, entries, quarantine, ...) writes and reads through.

Each ``write`` is one committed transaction, except inside ``batch()``, where writes are committed
together at its end. SQLite has one connection, shared by the threads that use the store (e.g. through
``asyncio.to_thread``) under a lock; other processes open their own on the same file and SQLite's WAL
locking arbitrates. PostgreSQL (``store.pg``) lends each call a connection of its pool, so that reads run
side by side; writers take turns on the write lock, in this process and in every other one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from xmppbridge.store import db, migrations, sqlite
from xmppbridge.store.sql import Connection

if TYPE_CHECKING:
    from xmppbridge.store.pg import PgBackend

T = TypeVar("T")
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str) -> bool:
    return target.startswith(POSTGRESQL_SCHEMES)


class Sessions:
    def __init__(self, target: str) -> None:
        self.target = target
        self._lock = threading.Lock()  # the SQLite connection, and the batch's
        self._batched = False  # inside batch(): writes are savepoints of one transaction
        self._batch: Connection | None = None  # PostgreSQL: the connection the batch holds
        self._sqlite: Connection | None = None
        self._pool: PgBackend | None = None
        self._open = True
        if is_url(target):
            from xmppbridge.store.pg import PgBackend  # psycopg is only loaded for a PostgreSQL store

            self._pool = PgBackend(target)
            with self._pool.connection() as conn:
                migrations.ensure_schema(conn)
        else:
            self._sqlite = sqlite.connect(target)

    @property
    def dialect_name(self) -> str:
        return "postgresql" if self._pool is not None else "sqlite"

    def _closed(self) -> RuntimeError:
        return RuntimeError(f"store {self.target} is closed")

    def sqlite_connection(self) -> Connection:
        if self._pool is not None:
            raise RuntimeError(f"store {self.target} is PostgreSQL: it has no one connection; use Store.sql")
        if self._sqlite is None:
            raise self._closed()
        return self._sqlite

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The connection for one call: the batch's or SQLite's (under the lock), or one of the pool."""
        if not self._open:
            raise self._closed()
        if self._pool is None or self._batched:
            with self._lock:
                conn = self._batch or self._sqlite
                if conn is None:
                    raise self._closed()
                yield conn
            return
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def write(self, *, pipelined: bool = False) -> Iterator[Connection]:
        """``pipelined``: in ``Connection.pipeline()``, the transaction's statements too (on PostgreSQL a
        round trip per read of rows, not per statement), for writes that never count rows."""
        with self._connection() as conn:
            if not self._batched:
                with db.transaction(conn, pipelined=pipelined):
                    yield conn
                return
            if not conn.in_transaction:  # the batch's first write opens its transaction
                conn.begin()
            with db.savepoint(conn, pipelined=pipelined):
                yield conn

    def read(self, query: Callable[[Connection], T]) -> T:
        with self._connection() as conn:
            return query(conn)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes made inside share one transaction, committed on the way out (also when the body
        raises: each write is atomic on its own, as a savepoint, so what was done is kept). Many small
        writes, one commit: the receive path stores the notifications of up to 20 ms in a batch, which
        at full rate saves most of the per-item commit cost (BENCHMARKS.md §3).

        Meant for writes made synchronously, in one go: the write lock is held until the end, so other
        writers wait (SQLite's busy_timeout, PostgreSQL's advisory lock). A batch inside a batch joins
        the outer one; reads inside it see its writes."""
        with self._lock:
            outer = not self._batched
            if outer and self._pool is not None:
                # Before marking the batch begun: a pool that gives no connection (the database
                # unreachable) fails this batch only, not every later call.
                self._batch = self._pool.take()
            self._batched = True
        try:
            yield
        finally:
            if outer:
                with self._lock:
                    self._end_batch()

    def _end_batch(self) -> None:
        self._batched = False
        held, self._batch = self._batch, None
        # Nothing to commit when the batch wrote nothing (it then costs nothing), nor when the store was
        # closed meanwhile (at shutdown, the server's last bytes still arrive).
        conn = held or self._sqlite
        try:
            if conn is not None and conn.in_transaction:
                try:
                    conn.execute("COMMIT")
                except Exception:
                    conn.execute("ROLLBACK")
                    raise
        finally:
            if held is not None and self._pool is not None:
                self._pool.give_back(held)  # type: ignore[arg-type]  # a PgConnection, taken above

    def close(self) -> None:
        with self._lock:
            self._open = False
            if self._sqlite is not None:
                self._sqlite.close()
                self._sqlite = None
            if self._pool is not None:
                self._pool.close()
