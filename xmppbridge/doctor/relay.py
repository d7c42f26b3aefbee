"""Asking the running bridge to run the XMPP checks over its own connection.

The server refuses a second connection for the bridge's component JID (Prosody: conflict), or, set up
for failover (``component_conflict_resolve = "kick_old"``, deploy/ha/README.md), lets it replace the
bridge's; and a server that accepted both (some spread a component's stanzas over all its connections)
would hand the doctor stanzas meant for the bridge. So while the bridge runs,
the doctor writes a request into the store's ``bridge_state`` table; the bridge polls it
(``answer_doctor``), runs ``xmpp.xmpp_checks`` and writes the checks back under the same id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta

from xmppbridge.config.settings import Config
from xmppbridge.doctor.report import Check, checks_from_data, checks_to_data
from xmppbridge.doctor.xmpp import xmpp_checks
from xmppbridge.store.contracts import BridgeState
from xmppbridge.xmpp.component import BridgeComponent

log = logging.getLogger(__name__)

REQUEST, ANSWER = "doctor.request", "doctor.answer"
POLL_INTERVAL = 1.0
# A bridge that does not take the request within this long is not running (it was killed and left
# "online" behind in the store) or predates `doctor`.
ACK_WAIT = 3 * POLL_INTERVAL + 2.0
STALE_REQUEST = timedelta(minutes=2)  # older requests were given up on by their doctor


def budget(config: Config, timeout: float) -> float:
    """How long the XMPP checks may take, ``timeout`` per request: the admin check's three, the approval
    probe's one, and per
    subscription a disco#info, the discovery (counted as three) and three per node (counted as three)."""
    return timeout * (4 + 7 * len(config.subscriptions)) + 2 * POLL_INTERVAL


async def ask_bridge(store: BridgeState, config: Config, timeout: float) -> list[Check] | None:
    """The running bridge's XMPP checks; None when no bridge took the request."""
    request_id = secrets.token_hex(8)
    store.set_state(REQUEST, json.dumps({"id": request_id, "timeout": timeout}))
    start = time.monotonic()
    while True:
        answer = _answer(store, request_id)
        waited = time.monotonic() - start
        if answer is not None and answer.get("checks") is not None:
            return checks_from_data(answer["checks"])
        if waited > (budget(config, timeout) if answer is not None else ACK_WAIT):
            return None
        await asyncio.sleep(0.2)


def _answer(store: BridgeState, request_id: str) -> dict[str, object] | None:
    value, _ = store.state().get(ANSWER, ("{}", None))
    try:
        answer = json.loads(value)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and answer.get("request") == request_id else None


async def answer_doctor(config: Config, store: BridgeState, xmpp: BridgeComponent) -> None:
    """The running bridge's side: every ``POLL_INTERVAL``, answer a new request of `xmppbridge doctor`."""
    answered = None
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        value, written = store.state().get(REQUEST, (None, None))
        if value is None or written is None or datetime.now(UTC) - written > STALE_REQUEST:
            continue
        try:
            request = json.loads(value)
            request_id, timeout = str(request["id"]), float(request["timeout"])
        except (ValueError, KeyError, TypeError):
            continue
        if request_id == answered:
            continue
        answered = request_id
        store.set_state(ANSWER, json.dumps({"request": request_id, "checks": None}))  # taken
        checks = await _run(config, xmpp, timeout)
        store.set_state(ANSWER, json.dumps({"request": request_id, "checks": checks_to_data(checks)}))
        log.info("ran the checks `xmppbridge doctor` asked for: %d FAIL",
                 sum(c.status == "FAIL" for c in checks))


async def _run(config: Config, xmpp: BridgeComponent, timeout: float) -> list[Check]:
    if not xmpp.online.is_set():
        tried = ", ".join(map(str, config.servers))
        return [Check("component connection", "FAIL", f"the running bridge is not connected to {tried}",
                      "see the bridge's log for why (secret, server down, component port)")]
    connected = Check("component connection", "ok", f"the running bridge is connected to {xmpp.server} as "
                      f"{config.jid}; the XMPP checks ran over its connection")
    try:
        return [connected, *await asyncio.wait_for(xmpp_checks(xmpp, config, timeout),
                                                   budget(config, timeout) - 2 * POLL_INTERVAL)]
    except TimeoutError:
        return [connected, Check("XMPP checks", "FAIL", "did not finish in time", "see the bridge's log")]
    except Exception as exc:  # noqa: BLE001 - reported to the doctor, not allowed to end the bridge's task
        log.exception("the checks `xmppbridge doctor` asked for failed")
        return [connected, Check("XMPP checks", "FAIL", f"failed in the bridge: {exc!r}",
                                 "see the bridge's log")]
