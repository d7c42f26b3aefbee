"""The lease watchdog (leadership.Leadership._watch): an active instance whose event loop is stuck (a store
call hanging on a vanished network) is still cut off once its lease is past its validity."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime

from xmppbridge.lease import LeaseTerms
from xmppbridge.process.leadership import Leadership

TERMS = LeaseTerms(retry=0.1, check=0.1, valid_for=1.5)  # roomy: a loaded machine delays a free loop too


class Held:
    """A lease that is always ours."""

    description = "a test lease"

    def acquire(self) -> bool:
        return True

    def confirm(self) -> None:
        pass

    def release(self) -> None:
        pass


class State:
    def set_state(self, key: str, value: str) -> None:
        pass

    def state(self) -> dict[str, tuple[str, datetime]]:
        return {}


def lead(stuck_for: float) -> bool:
    """Whether the watchdog severed, with ``act`` blocking the event loop for ``stuck_for`` s."""
    severed = threading.Event()

    async def main() -> None:
        until = asyncio.Event()

        async def act() -> None:
            await asyncio.sleep(0.3)  # the loop free: confirmations go on
            until.set()  # stop once the loop gets on
            time.sleep(stuck_for)  # blocking, as a store call on the loop is: nothing else runs meanwhile
            await asyncio.sleep(60)

        await Leadership(Held(), State(), "t1", TERMS).run(act, lambda: None, until, sever=severed.set)

    asyncio.run(main())
    return severed.is_set()


def test_a_stuck_loop_past_the_lease_validity_is_severed() -> None:
    assert lead(stuck_for=2 * TERMS.valid_for)


def test_a_free_loop_is_left_alone() -> None:
    assert not lead(stuck_for=0)
