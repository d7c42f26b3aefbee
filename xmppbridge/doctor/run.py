"""``diagnose``: every check of `xmppbridge doctor`, against the running servers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from xmppbridge.config.settings import Config
from xmppbridge.doctor.advice import connection_check
from xmppbridge.doctor.connect import CONFLICT, component_session
from xmppbridge.doctor.local import feed_checks, signing_checks, trust_checks
from xmppbridge.doctor.relay import ask_bridge, budget
from xmppbridge.doctor.report import Check, Report
from xmppbridge.doctor.xmpp import xmpp_checks
from xmppbridge.store import Store


async def diagnose(config: Config, *, timeout: float = 10.0, now: datetime | None = None) -> Report:
    """``timeout``: seconds per network step (connection, each XMPP request)."""
    now = now or datetime.now(UTC)
    checks, bridge_running = await _xmpp_part(config, timeout)
    return Report.of([*checks, *signing_checks(config, now), *trust_checks(config, now),
                      *feed_checks(config.feed, now, bridge_running=bridge_running)])


async def _xmpp_part(config: Config, timeout: float) -> tuple[list[Check], bool]:
    """The XMPP checks and whether the bridge is running. A bridge that says it is online in its store
    is asked first, so that the doctor does not connect as the bridge's JID beside it."""
    if _says_online(config):
        with Store(config.store_target) as store:
            answer = await ask_bridge(store, config, timeout)
        if answer is not None:
            return answer, True
    # The servers in the bridge's order (component.servers: the nodes of a cluster), until one lets us in.
    failed: list[Check] = []
    for server in config.servers:
        address = str(server)
        async with component_session(config, timeout, server) as (outcome, detail, xmpp):
            if outcome == "online":
                # The bridge fails over to this one: the nodes before it that failed are worth a warning.
                return [*(replace(check, status="warn") for check in failed),
                        connection_check(outcome, detail, jid=config.jid, address=address, timeout=timeout),
                        *await xmpp_checks(xmpp, config, timeout)], False
        if outcome == CONFLICT:
            break
        failed.append(connection_check(outcome, detail, jid=config.jid, address=address, timeout=timeout))
    else:
        return failed, False
    # The server holds a connection for our JID: a bridge started (or its store is elsewhere).
    with Store(config.store_target) as store:
        answer = await ask_bridge(store, config, timeout)
    if answer is not None:
        return answer, True
    return [Check("component connection", "FAIL",
                  f"{config.jid} is connected already (the server at {address} refused a second connection: "
                  f"conflict), but no bridge using {config.store_target} answered within "
                  f"{budget(config, timeout):.0f} s",
                  "is another bridge process connected with this JID? (only one may be), or is the running "
                  "bridge older than `doctor`?")], True


def _says_online(config: Config) -> bool:
    if config.store_url is None and not config.store_path.exists():
        return False
    with Store(config.store_target) as store:
        value, _ = store.state().get("connection", ("", None))
    return value == "online"
