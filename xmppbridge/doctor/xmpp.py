"""The XMPP checks, over a connected component: the doctor's own short-lived one, or the running
bridge's (``relay.py``). One implementation for both, so both paths report the same thing."""

from __future__ import annotations

import secrets

from slixmpp.exceptions import IqError, IqTimeout

from xmppbridge.config.settings import Config, Subscription
from xmppbridge.doctor.advice import approval_check, nodes_check, xmpp_error_fix
from xmppbridge.doctor.report import Check
from xmppbridge.xmpp.authorization import AUTHORIZE_FEATURE
from xmppbridge.xmpp.component import BridgeComponent, peer_failure

ADMIN_FIX = ("add the component JID to the pubsub service's admins (Prosody: `admins` of the pubsub "
             "Component, or the global `admins`)")


async def xmpp_checks(xmpp: BridgeComponent, config: Config, timeout: float) -> list[Check]:
    """Admin rights on our pubsub service, then every subscription's peer. ``timeout``: per request."""
    checks = [await admin_check(xmpp, config.pubsub_service, timeout),
              await approval_probe(xmpp, config, timeout)]
    for subscription in config.subscriptions:
        checks += await peer_checks(xmpp, subscription, timeout)
    return checks


async def admin_check(xmpp: BridgeComponent, service: str, timeout: float) -> Check:
    """Create, configure and delete a scratch node: what the bridge does with its own nodes (it creates
    them with a configuration, ``BridgeComponent.ensure_node``), without touching them."""
    name = f"pubsub admin on {service}"
    node = f"xmppbridge-doctor-{secrets.token_hex(4)}"
    pubsub, me = xmpp.pubsub, xmpp.boundjid.bare
    form = xmpp.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
    form.add_field(var="pubsub#title", value="xmppbridge doctor (scratch node)")
    steps = (("create a node", lambda: pubsub.create_node(service, node, ifrom=me, timeout=timeout)),
             ("configure a node", lambda: pubsub.set_node_config(service, node, form, ifrom=me,
                                                                 timeout=timeout)))
    failure: tuple[str, IqError | IqTimeout] | None = None
    created = False
    for step, request in steps:
        try:
            await request()
        except (IqError, IqTimeout) as exc:
            failure = (step, exc)
            break
        created = True
    if created:
        try:
            await pubsub.delete_node(service, node, ifrom=me, timeout=timeout)
        except (IqError, IqTimeout) as exc:
            if failure is None:
                return Check(name, "warn", f"created and configured node {node} but could not delete it: "
                             f"{_error(exc)}", f"delete node {node} on {service} by hand")
    if failure is None:
        return Check(name, "ok", f"{me} may create, configure and delete nodes")
    step, exc = failure
    if isinstance(exc, IqTimeout):
        return Check(name, "FAIL", f"{service} did not answer within {timeout:.0f} s (step: {step})",
                     f"check pubsub.service: is {service} the pubsub component of our server?")
    fix = ADMIN_FIX if exc.condition in ("forbidden", "not-authorized", "not-allowed") else \
        f"see the log of the server of {service}"
    return Check(name, "FAIL", f"{me} may not {step} on {service}: {_error(exc)}", fix)


async def approval_probe(xmpp: BridgeComponent, config: Config, timeout: float) -> Check:
    """Whether our service offers ``authorize`` (disco#info features), which approval needs."""
    if config.approval == "off":
        return approval_check(config.pubsub_service, "off", False)
    try:
        info = await xmpp.plugin["xep_0030"].get_info(jid=config.pubsub_service, ifrom=xmpp.boundjid.bare,
                                                      timeout=timeout, cached=False)
    except (IqError, IqTimeout) as exc:
        return Check(f"approval on {config.pubsub_service}", "warn", f"disco#info failed: {_error(exc)}",
                     f"see the log of the server of {config.pubsub_service}")
    return approval_check(config.pubsub_service, config.approval,
                          AUTHORIZE_FEATURE in info["disco_info"]["features"])


async def peer_checks(xmpp: BridgeComponent, subscription: Subscription, timeout: float) -> list[Check]:
    service = subscription.service
    me = xmpp.boundjid.bare
    name = f"peer {service}"
    try:
        await xmpp.plugin["xep_0030"].get_info(jid=service, ifrom=me, timeout=timeout, cached=False)
    except IqError as exc:
        return [Check(f"{name} reachable", "FAIL", f"disco#info over s2s: {_error(exc)}",
                      xmpp_error_fix(exc.condition, service, exc.text))]
    except IqTimeout:
        return [Check(f"{name} reachable", "FAIL", f"no answer to disco#info within {timeout:.0f} s",
                      xmpp_error_fix("remote-server-timeout", service))]
    checks = [Check(f"{name} reachable", "ok", "answers disco#info over s2s")]

    try:
        discovered = await xmpp.discover_iodef_nodes(service, timeout=timeout)
    except (IqError, IqTimeout) as exc:
        checks.append(Check(f"{name} IODEF nodes", "FAIL", f"discovery (disco#items, disco#info per node) "
                            f"failed: {_error(exc)}", _fix(exc, service)))
        return checks
    checks.append(nodes_check(f"{name} IODEF nodes", service, subscription.nodes, discovered))
    nodes = list(subscription.nodes or discovered)
    if not nodes:
        return checks
    checks.append(await _subscribe_check(xmpp, service, nodes, timeout))
    return checks


async def _subscribe_check(xmpp: BridgeComponent, service: str, nodes: list[str], timeout: float) -> Check:
    """Subscribe to each node and read one item, leaving every subscription as it was: one we held is
    used as it is, one made here is removed again."""
    name = f"peer {service} subscribe+read"
    pubsub, me = xmpp.pubsub, xmpp.boundjid.bare
    held = 0
    for node in nodes:
        step = "subscribe to"
        try:
            if await _subscribed(xmpp, service, node, timeout):
                held += 1
                step = "read items of"
                await pubsub.get_items(service, node, max_items=1, ifrom=me, timeout=timeout)
                continue
            await pubsub.subscribe(service, node, ifrom=me, timeout=timeout)
            try:
                step = "read items of"
                await pubsub.get_items(service, node, max_items=1, ifrom=me, timeout=timeout)
            finally:
                await pubsub.unsubscribe(service, node, ifrom=me, timeout=timeout)
        except (IqError, IqTimeout) as exc:
            return Check(name, "FAIL", f"may not {step} {node}: {_error(exc)}", _fix(exc, service))
    return Check(name, "ok", f"subscribed to and read {len(nodes)} node(s) ({held} by the bridge's "
                 "existing subscription)")


async def _subscribed(xmpp: BridgeComponent, service: str, node: str, timeout: float) -> bool:
    """Whether we hold a subscription to ``node`` (XEP-0060 §5.6). When the service cannot say, count it
    as held, so that the check never removes a subscription the bridge relies on."""
    try:
        answer = await xmpp.pubsub.get_subscriptions(service, node, ifrom=xmpp.boundjid.bare, timeout=timeout)
    except IqError:
        return True
    me = xmpp.boundjid.bare
    return any(sub["jid"].bare == me and sub["subscription"] == "subscribed"
               for sub in answer["pubsub"]["subscriptions"])


def _fix(exc: IqError | IqTimeout, service: str) -> str:
    """The fix for a failed request, from its condition and text as the bridge's peer health reads them
    (``component.peer_failure``: a timeout is ``peers.TIMEOUT``)."""
    failure = peer_failure(exc)
    assert failure is not None  # an IqError or IqTimeout always says something about the peer
    return xmpp_error_fix(failure.condition, service, failure.text)


def _error(exc: IqError | IqTimeout) -> str:
    """The XMPP error condition and its text, as the server gave them (RFC 6120 §8.3)."""
    if isinstance(exc, IqTimeout):
        return "no answer in time"
    return f"{exc.condition} ({exc.text})" if exc.text else exc.condition
