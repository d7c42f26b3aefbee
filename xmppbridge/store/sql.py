"""What the table modules need from a database connection, and the few places where SQLite and
PostgreSQL speak differently.

The table modules write one SQL text for both backends: ``?`` and ``:name`` parameters, ``RETURNING id``,
``ON CONFLICT``, ``IS NOT DISTINCT FROM``, ``FALSE``, aliased subqueries. SQLite (3.35 or later, Debian 12
has 3.40) runs it as written; ``store.pg`` rewrites parameters and column types for PostgreSQL. Where the
two cannot share a text, a module asks its connection's ``dialect`` (below): lists as one parameter,
planner hints, full-text search (``store.fulltext``).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Row(Protocol):
    """A result row, by column name or position (``sqlite3.Row`` and ``store.pg.Row``)."""

    def __getitem__(self, key: str | int) -> Any: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """One database session, as the table modules use it; transactions are ``store.db``'s."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ...) -> Cursor: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...
    def begin(self) -> None:
        """Open a write transaction holding the store's write lock (writers go one at a time)."""

    def stream(self, sql: str) -> Any:
        """A cursor over a large result that does not hold all of it in memory (``fetchmany``)."""

    def pipeline(self) -> AbstractContextManager[None]:
        """Statements run inside are sent without waiting for each one's answer, which is waited for when
        its rows are read (PostgreSQL's pipeline mode: one round trip for a run of writes, not one each);
        an error shows at the next read or at the end. ``rowcount`` is unknown inside, so only for code
        that reads rows, never counts. SQLite runs in the process: nothing to save, nothing changes."""

    @property
    def in_transaction(self) -> bool: ...
    def close(self) -> None: ...


class Transactions(Protocol):
    """What a concern of the store needs of ``store.sessions.Sessions``: a write transaction, a read."""

    def write(self) -> AbstractContextManager[Connection]: ...
    def read(self, query: Callable[[Connection], T]) -> T: ...


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" | "postgresql"

    def one_of(self, column: str, values: Collection[Any], *, negate: bool = False) -> tuple[str, Any]:
        """``column`` in ``values`` as a condition with one parameter, however many values (SQLite's
        statement cache and variable limit, PostgreSQL's plan cache); returns (condition, parameter)."""
        if self.name == "postgresql":
            return (f"NOT ({column} = ANY(?))" if negate else f"{column} = ANY(?)"), list(values)
        keyword = "NOT IN" if negate else "IN"
        return f"{column} {keyword} (SELECT value FROM json_each(?))", json.dumps(list(values))

    def keys_table(self, names: Sequence[str], keys: Collection[Sequence[str]]) -> tuple[str, list[Any]]:
        """``keys`` (tuples of text, one value per name) as a table ``k`` for a FROM clause, with its
        parameters: a round's keys joined against a unique index in one statement, the index kept for
        each key (PostgreSQL: ``unnest`` of arrays, its columns in the ``"C"`` collation of ours; SQLite:
        a JSON array of arrays, to be read first by a ``CROSS JOIN``, one index look-up a row)."""
        if self.name == "postgresql":
            arrays = ", ".join("CAST(? AS TEXT[])" for _ in names)
            columns = ", ".join(f'{name} COLLATE "C" AS {name}' for name in names)
            return (f"(SELECT {columns} FROM unnest({arrays}) AS u({', '.join(names)})) AS k",
                    [list(column) for column in zip(*keys, strict=True)] or [[] for _ in names])
        columns = ", ".join(f"json_extract(value, '$[{i}]') AS {name}" for i, name in enumerate(names))
        return f"(SELECT {columns} FROM json_each(?)) AS k", [json.dumps([list(key) for key in keys])]

    def integers(self, values: Collection[int]) -> tuple[str, Any]:
        """``values`` as a one-column table (column ``value``) for a FROM clause, and its parameter: many
        rows inserted by one statement (PostgreSQL: ``unnest`` of an array; SQLite: a JSON array)."""
        if self.name == "postgresql":
            return "unnest(CAST(? AS BIGINT[])) AS k(value)", list(values)
        return "json_each(?)", json.dumps(list(values))

    def unindexed(self, expression: str) -> str:
        """``expression`` such that SQLite's planner does not pick an index for it (the unary ``+``);
        PostgreSQL plans by its statistics and has no such hint."""
        return expression if self.name == "postgresql" else f"+{expression}"

    def indexed_by(self, index: str) -> str:
        """SQLite's ``INDEXED BY`` clause; nothing on PostgreSQL."""
        return "" if self.name == "postgresql" else f" INDEXED BY {index}"


def redact(target: str) -> str:
    """A store's path or URL without the URL's password, for messages and logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", target)


SQLITE = Dialect("sqlite")
POSTGRESQL = Dialect("postgresql")


class SqliteConnection(sqlite3.Connection):
    """``sqlite3.connect(..., factory=SqliteConnection)``: the standard connection, with a dialect."""

    dialect = SQLITE

    def begin(self) -> None:
        self.execute("BEGIN IMMEDIATE")  # the write lock up front, waiting up to busy_timeout

    def stream(self, sql: str) -> sqlite3.Cursor:
        """A large result, a chunk at a time (SQLite's cursors step through results as they are read)."""
        return self.execute(sql)

    def pipeline(self) -> AbstractContextManager[None]:
        return nullcontext()
