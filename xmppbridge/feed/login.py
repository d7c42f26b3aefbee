"""The feed's door: Basic and Bearer credentials checked through the ``throttle``, scrypt bounded.

Each wrong password costs ~40 ms of scrypt on a core. Unbounded, a handful of guessers in parallel take
every core from federated delivery; so at most ``hash_slots`` passwords are verified at once, and a
client or user name that keeps failing is refused (429, RFC 6585 §4, with Retry-After, RFC 9110
§10.2.3) before any hashing. A refusal is answered only after a short tarpit, so that a guesser that
waits for answers also stops costing the event loop; at most ``MAX_TARPITTED`` refusals wait at once,
the rest are answered at once.

Audit lines (logger ``xmppbridge.feed.login``) name the client address and the user name, never what
was sent as a password or token.
"""

from __future__ import annotations

import asyncio
import logging
import math

from aiohttp import web

from xmppbridge.feed.access import User
from xmppbridge.feed.auth import Authenticator
from xmppbridge.feed.throttle import Throttle, client_address, client_key

log = logging.getLogger(__name__)

MAX_TARPITTED = 256  # refusals held back at once; each is a parked coroutine and an open connection
_NAME_SHOWN = 64  # characters of a claimed user name in the audit line


class LoginGate:
    def __init__(self, auth: Authenticator, throttle: Throttle) -> None:
        self.auth, self.throttle = auth, throttle
        self._hashing = asyncio.Semaphore(throttle.settings.hash_slots)
        self._tarpitted = 0

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The key a request's attempts count under (``throttle.client_address``, ``client_key``)."""
        return client_key(client_address(peer, forwarded_for, self.throttle.settings.trusted_proxies))

    async def basic(self, client: str, name: str, password: str) -> User | None:
        await self._admit(client, name)
        user = self.auth.remembered(name, password)  # a browser's repeated credentials: no scrypt
        known = self.auth.has_password(name)
        if user is None and known:
            async with self._hashing:  # scrypt, off the event loop, never more than hash_slots at once
                user = await asyncio.to_thread(self.auth.basic, name, password)
        if user is None:
            self._failed(client, name, "password" if known else "unknown-user")
        else:
            self.throttle.succeeded(client, name)
        return user

    async def bearer(self, client: str, token: str) -> User | None:
        """Tokens cost one SHA-256, so they need no hashing bound; failures count against the client."""
        await self._admit(client, None)
        user = self.auth.bearer(token)
        if user is None:
            self._failed(client, None, "token")
        else:
            self.throttle.succeeded(client, None)
        return user

    async def _admit(self, client: str, name: str | None) -> None:
        wait = self.throttle.admit(client, name)
        if wait <= 0:
            return
        delay = min(wait, self.throttle.settings.tarpit)
        if delay > 0 and self._tarpitted < MAX_TARPITTED:
            self._tarpitted += 1
            try:
                await asyncio.sleep(delay)
            finally:
                self._tarpitted -= 1
        retry = max(1, math.ceil(wait - delay))
        raise web.HTTPTooManyRequests(text=f"too many failed logins; try again in {retry} s\n",
                                      headers={"Retry-After": str(retry)})

    def _failed(self, client: str, name: str | None, reason: str) -> None:
        shown = "-" if name is None else repr(name[:_NAME_SHOWN])
        log.warning("login failed: client %s, user %s, reason %s", client, shown, reason)
        for block in self.throttle.failed(client, name, reason):
            log.warning("login blocked: %s %s refused for %.0f s after %d failures", block.scope,
                        client if block.scope == "client" else shown, block.seconds, block.failures)
