"""Store calls made by the event loop's tasks (the outbox drain, the chat watcher) where they wait.

On PostgreSQL a store call is mostly waiting: round trips to the server, each a wake-up of two processes
on a busy machine. Made on the event loop, that wait is time no XMPP answer is read and nothing is sent
(BENCHMARKS.md, benchmark 12, profiled with py-spy). So there they run in a thread (``asyncio.to_thread``;
the store's pool lends each thread its own connection) and the loop goes on meanwhile.

On SQLite a store call is work in this process, on the store's one connection under its lock, which the
loop's other store calls would wait for anyway: a thread would only add hand-offs, so it runs at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def waits_on_server(backend: str) -> bool:
    """Whether a store of ``backend`` ("sqlite" or "postgresql") is called from a thread."""
    return backend == "postgresql"


async def store_call(backend: str, call: Callable[[], T]) -> T:
    """``call()``, in a thread if the store's calls wait on a server. The caller passes it everything
    it needs as it stands now (copies, not the loop's own mutable state)."""
    if waits_on_server(backend):
        return await asyncio.to_thread(call)
    return call()
