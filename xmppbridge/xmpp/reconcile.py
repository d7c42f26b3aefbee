"""Make the member affiliations of our nodes equal to their audiences, at start, periodically and on reload.

One round lists our nodes under the node prefix (disco#items, XEP-0030 / XEP-0060 §5.2), reads each
node's affiliations (XEP-0060 §8.9.1) and subscriptions (§8.8.1) in the owner namespace, asks
``policy.affiliations.plan`` what differs from the node's audience, and applies it: subscriptions set to
``none`` (§8.8.2), affiliations set to ``none`` or ``member`` (§8.9.2). Every change is one audit line
and one count (``xmppbridge_affiliation_changes_total``); a node that fails is logged and tried again in
the next round, never ending the bridge.

Order matters on Prosody 0.12: removing the member affiliation of a JID that is still subscribed
answers ``forbidden`` (util/pubsub.lua ``set_affiliation`` then tries to *add* the subscription, which
the now-outcast JID may not have) *after* storing the removal, and the subscription stays. So a leaver's
subscriptions are cancelled first, then its affiliation removed; the service then refuses its items
requests and subscribe requests (outcast on a whitelist node: ``get_items`` and ``be_subscribed`` are
false) and sends it no notification. A leaver's bridge that renews its subscription between the two
gets the same ``forbidden``; its renewed subscription is cancelled and the removal asked again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from xml.etree import ElementTree as ET

from slixmpp import Iq
from slixmpp.exceptions import IqError

from xmppbridge.config.settings import Config
from xmppbridge.jids import bare_jid
from xmppbridge.policy.affiliations import Changes, NodeSubscription, plan, target_of
from xmppbridge.policy.members import Registry
from xmppbridge.policy.nodes import parse_node_name
from xmppbridge.xmpp.component import IQ_TIMEOUT, BridgeComponent, explain

log = logging.getLogger(__name__)

OWNER_NS = "http://jabber.org/protocol/pubsub#owner"

Count = Callable[[str], None]  # one change of policy.affiliations.CHANGES happened
Approved = Callable[[str], frozenset[str]]  # node -> bridges an operator approved there (Store.approved_jids)


class Reconciler:
    """Holds the audiences in force (``config``, swapped by the bridge on reload) and applies them."""

    def __init__(self, config: Config, xmpp: BridgeComponent, count: Count = lambda change: None,
                 approved: Approved = lambda node: frozenset()) -> None:
        self.config, self.xmpp, self.count, self.approved = config, xmpp, count, approved
        self._lock = asyncio.Lock()  # a reload's round and the periodic one never interleave on a node

    async def run(self) -> None:
        """A round every ``pubsub.reconcile_interval``: the bound on how long a change made behind our
        back (or a failed round) lasts."""
        while True:
            await asyncio.sleep(self.config.reconcile_interval)
            if self.xmpp.online.is_set():
                await self.round("periodic")

    async def round(self, trigger: str) -> bool:
        """One pass over our nodes; True when every node was read and brought to its audience."""
        async with self._lock:
            service = self.config.pubsub_service
            try:
                nodes = await self._our_nodes(service)
            except Exception as exc:  # noqa: BLE001 - as for one node below
                log.warning("reconcile (%s): cannot list the nodes of %s: %s; trying again in the next round",
                            trigger, service, explain(exc))
                return False
            ok = True
            for node in nodes:
                try:
                    await self._reconcile_node(service, node, trigger)
                except Exception as exc:  # noqa: BLE001 - an error answer, a timeout, a lost link: not fatal
                    ok = False
                    log.warning("reconcile (%s) of %s on %s failed: %s; trying again in the next round",
                                trigger, node, service, explain(exc))
            log.info("reconciled %d nodes on %s (%s)%s", len(nodes), service, trigger,
                     "" if ok else ", some failed")
            return ok

    async def _our_nodes(self, service: str) -> list[str]:
        reply = await self.xmpp.plugin["xep_0030"].get_items(jid=service, ifrom=self.xmpp.boundjid.bare,
                                                             timeout=IQ_TIMEOUT)
        prefix = self.config.node_prefix
        return sorted(node for _jid, node, _name in reply["disco_items"]["items"]
                      if node and parse_node_name(prefix, node) is not None)

    async def _reconcile_node(self, service: str, node: str, trigger: str) -> None:
        config = self.config  # one config for the whole node, even if a reload swaps it meanwhile
        audience = config.node_audience(node)
        # Operator approvals (RFC 8600 authorize) keep their subscriptions: they are part of the target.
        target = target_of(audience, self.approved(node))
        if target is None:
            return  # open: no affiliations to keep, nothing to read
        pubsub, me = self.xmpp.pubsub, self.xmpp.boundjid.bare
        affiliations = _affiliations(await pubsub.get_node_affiliations(service, node, ifrom=me,
                                                                        timeout=IQ_TIMEOUT))
        subscriptions = _subscriptions(await pubsub.get_node_subscriptions(service, node, ifrom=me,
                                                                           timeout=IQ_TIMEOUT))
        changes = plan(affiliations, subscriptions, me, target)
        if changes:
            await self._apply(service, node, changes, _why(config, node), trigger)

    async def _apply(self, service: str, node: str, changes: Changes, category: str, trigger: str) -> None:
        pubsub, me = self.xmpp.pubsub, self.xmpp.boundjid.bare
        names = self.config.registry
        for sub in changes.cancel:  # first: see the module docstring
            await pubsub.modify_subscriptions(service, node, subscriptions=[(sub.jid, "none")], ifrom=me,
                                              timeout=IQ_TIMEOUT)
            self._audit("subscription-cancelled", f"cancelled the subscription of {_who(names, sub.jid)} "
                        f"to {node}: not in audience {category} ({trigger})")
        for jid in changes.remove:
            await self._remove(service, node, jid, category, trigger)
            self._audit("removed", f"removed {_who(names, jid)} from {node}: not in audience {category} "
                        f"({trigger})")
        for jid in changes.add:
            await pubsub.modify_affiliations(service, node, affiliations=[(jid, "member")], ifrom=me,
                                             timeout=IQ_TIMEOUT)
            self._audit("added", f"added {_who(names, jid)} to {node}: in audience {category} ({trigger})")

    async def _remove(self, service: str, node: str, jid: str, category: str, trigger: str) -> None:
        """Set ``jid``'s affiliation to none. A leaver's bridge that renews its subscription between our
        cancel and this request (it does every check interval) gets Prosody 0.12's ``forbidden`` with the
        removal stored and the subscription kept (module docstring); as an outcast it cannot subscribe
        again, so its renewed subscription is cancelled and the removal asked once more."""
        pubsub, me = self.xmpp.pubsub, self.xmpp.boundjid.bare
        try:
            await pubsub.modify_affiliations(service, node, affiliations=[(jid, "none")], ifrom=me,
                                             timeout=IQ_TIMEOUT)
            return
        except IqError as exc:
            if exc.condition != "forbidden":
                raise
        subscriptions = _subscriptions(await pubsub.get_node_subscriptions(service, node, ifrom=me,
                                                                           timeout=IQ_TIMEOUT))
        for sub in subscriptions:
            if bare_jid(sub.jid) == jid and sub.state != "none":
                await pubsub.modify_subscriptions(service, node, subscriptions=[(sub.jid, "none")], ifrom=me,
                                                  timeout=IQ_TIMEOUT)
                self._audit("subscription-cancelled", f"cancelled the renewed subscription of "
                            f"{_who(self.config.registry, sub.jid)} to {node}: not in audience {category} "
                            f"({trigger})")
        await pubsub.modify_affiliations(service, node, affiliations=[(jid, "none")], ifrom=me,
                                         timeout=IQ_TIMEOUT)

    def _audit(self, change: str, line: str) -> None:
        log.info("audit: %s", line)
        self.count(change)


def _affiliations(answer: Iq) -> dict[str, str]:
    found = _owner_child(answer, "affiliations")
    return {a.get("jid", ""): a.get("affiliation", "none") for a in found if a.get("jid")}


def _subscriptions(answer: Iq) -> list[NodeSubscription]:
    found = _owner_child(answer, "subscriptions")
    return [NodeSubscription(s.get("jid", ""), s.get("subid"), s.get("subscription", "subscribed"))
            for s in found if s.get("jid")]


def _owner_child(answer: Iq, name: str) -> list[ET.Element]:
    found = answer.xml.find(f"{{{OWNER_NS}}}pubsub/{{{OWNER_NS}}}{name}")
    return [] if found is None else list(found)


def _why(config: Config, node: str) -> str:
    category = parse_node_name(config.node_prefix, node)
    return "/".join(category) if category else node


def _who(registry: Registry, jid: str) -> str:
    member = registry.by_bridge(jid)
    return f"{jid} (member {member.name})" if member else jid
