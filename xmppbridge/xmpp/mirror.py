"""Keep subscriptions to remote nodes, catch up after every gap, and hand items to the receive path.

After each (re)connection every subscribed node is reconciled with the remote node: its item ids are
listed (disco#items), every item is fetched by id and re-verified (the store absorbs what it already
has), and items that disappeared while we were away are marked deleted. Discovery (RFC 8600 §5) runs at
start and every ``discovery_interval`` so that nodes a peer creates later are picked up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol
from xml.etree import ElementTree as ET

from xmppbridge.config.settings import Config, Subscription
from xmppbridge.errors import PublishFailed
from xmppbridge.paths.custody import MemberOf, member_names
from xmppbridge.paths.receive import Checked, receive_item
from xmppbridge.peers import classify
from xmppbridge.policy.affiliations import READING
from xmppbridge.signing.verify import TrustStore
from xmppbridge.signing.wireform import wire_bytes
from xmppbridge.store.contracts import Batches, Entries, PeerRecords, Quarantine, Subscriptions
from xmppbridge.store.items import ItemRef, Refused
from xmppbridge.store.subscriptions import ItemState
from xmppbridge.xmpp.component import BridgeComponent, explain, peer_failure
from xmppbridge.xmpp.listing import ListingPace, round_delay
from xmppbridge.xmpp.peers import PeerNotes
from xmppbridge.xmpp.sweep import Sweep

log = logging.getLogger(__name__)

# Item fetches in flight during catch-up, per service over all its nodes: enough to hide the s2s round
# trip (INTEROP.md §1: windows of 16-64). Each service has its own, so that a hub catching up from every
# spoke keeps them all busy rather than one after the other (the windows are first come, first served:
# one shared window fetched one node's every item before the next node's). FETCH_WINDOW_ALL caps them
# together: slixmpp slows down with thousands of requests in flight (INTEROP.md §1).
FETCH_WINDOW = 16
FETCH_WINDOW_ALL = 64
# Node listings in flight at one service. Prosody 0.12 loads every item of a node, payloads included, to
# list its ids (a second or more for a full node); twenty at once starve the server until the IQs time
# out. One at a time still keeps the link busy: a node's fetches overlap with the next node's listing.
# Different services are different servers, listed side by side: a hub that catches up from every spoke
# would otherwise wait for each spoke's listings in turn (bench_hub_restart.py).
LIST_WINDOW = 1
CONTACT_NOTE_INTERVAL = 5.0
# Seconds after a reload dropped a service in which what it sends is passed over: longer than an IQ's
# timeout, so that a catch-up's fetches under way at the reload have come back or failed.
DROP_GRACE = 60.0
# Seconds after a request was left pending at which we ask whether the owner let it in (``watch_approvals``).
# An owner's bridge approves a member within milliseconds, but the request's answer said "pending", and
# what is published before we know it is approved reaches us through no notification.
APPROVAL_LOOKS = (1.0, 5.0, 20.0)


# What a reconciliation with a remote node is for (``Mirror.catch_up``): after a (re)connection, fetch
# everything again; the periodic check; or, once an owner approved our pending request, what came meanwhile.
Reconciling = Literal["catch-up", "check", "approval"]


@dataclass(frozen=True)
class CatchUp:
    listed: int
    fetched: int
    retracted: int


def retracted_while_away(states: Iterable[ItemState], remote_ids: Iterable[str], *,
                         remote_capacity: int) -> list[str]:
    """Mirrored items that are gone from the remote node because they were retracted.

    A node below its ``max_items`` has dropped nothing on its own, so everything missing was retracted.
    A full node may have evicted its oldest items (XEP-0060 §12.15); then only items newer than the
    oldest one still there can have been retracted, and older missing ones are kept.
    """
    states = list(states)
    present = set(remote_ids)
    missing = [s for s in states if not s.deleted and s.item_id not in present]
    if len(present) < remote_capacity:
        return [s.item_id for s in missing]
    oldest_present = min((s.updated_at for s in states if s.item_id in present), default=None)
    if oldest_present is None:
        return []
    return [s.item_id for s in missing if s.updated_at > oldest_present]


def renews(held_for_owner: bool, affiliation: str | None) -> bool:
    """Whether a renewal subscribes to a node we follow again. On a node whose service held our request
    for its owner (``authorize``, RFC 8600 §8.3.4: ejabberd holds every request to such a node, members'
    too), a subscription request from a JID that is no member of the node is one more request for the
    owner's operator to decide: a member that left the consortium, revoked by the owner (subscription
    cancelled, affiliation removed), would ask at every check round. So there it renews only while the
    service lists us as a reader (XEP-0060 §5.7), or cannot tell (``affiliation`` None). Anywhere else a
    renewal is harmless (Prosody refuses a JID that is no member; an open node lets anyone in)."""
    return not held_for_owner or affiliation is None or affiliation in READING


def still_subscribed(state: str) -> bool:
    """Whether a subscription the service lists for us needs no renewal (XEP-0060 §4.1.2): ``subscribed``,
    or ``unconfigured`` (held until its options are set, §6.1.5: subscribing again would not change that,
    and neither Prosody nor ejabberd asks for it). ``pending`` is renewed: a request held for an owner
    who would let us in at once was lost (``component.subscribe``); ``none``, or not listed, is a
    subscription the service forgot or cancelled."""
    return state in ("subscribed", "unconfigured")


class Mirroring(Entries, Quarantine, Subscriptions, PeerRecords, Batches, Protocol):
    """What the mirror reads and writes: entries, the quarantine, our subscriptions and the peers'
    health, in batches of one notification stanza."""


class Mirror:
    """The component's ItemSink: verifies and stores what remote nodes send."""

    def __init__(self, config: Config, store: Mirroring, trust: TrustStore, *,
                 relay: Callable[[ItemRef, bytes, Checked], None] | None = None,
                 retract_relayed: Callable[[ItemRef], None] | None = None,
                 own_echo: Callable[[bytes | None], bool] | None = None,
                 member_of: MemberOf | None = None) -> None:
        """``relay``: a coordinator's ``Hub.relay``, called for each item just stored, and
        ``retract_relayed`` its ``Hub.retract``, for each one just marked retracted; ``own_echo``
        recognises our own items relayed back (``hub.OwnEcho``); ``member_of`` names custody signers."""
        self.config, self.store, self.trust = config, store, trust
        self.relay, self.retract_relayed = relay, retract_relayed
        self.own_echo, self.member_of = own_echo, member_of
        # Per node: our own items a hub relayed back, passed over; the periodic check does not fetch them
        # again as missing (kept in memory: after a restart each is fetched once more).
        self._echoes: dict[tuple[str, str], set[str]] = {}
        self._synced: set[tuple[str, str]] = set()  # subscribed and caught up in this session
        # Nodes whose pending request was made anew in this session (``component.subscribe``'s
        # ask_again): once per connection, not at every retry of a node the owner keeps us out of.
        self._asked_again: set[tuple[str, str]] = set()
        # Nodes whose service held a request of ours for its owner (``authorize``), and of those the ones
        # whose renewals are held off because the service no longer lists us as a member (``renews``).
        self._held_for_owner: set[tuple[str, str]] = set()
        self._not_renewed: set[tuple[str, str]] = set()
        # Of those, the ones still pending when last asked: their owner's approval is seen at a renewal
        # round, which then catches up on what was published while we waited (``_approved``).
        self._awaiting_owner: set[tuple[str, str]] = set()
        self._pending_seen = asyncio.Event()  # a request was left pending: ``watch_approvals`` looks soon
        self._cancel: set[tuple[str, str]] = set()  # nodes of services a reload dropped, to unsubscribe
        # Services a reload dropped -> when: never subscribed to again (a round under way at the reload
        # would), and what they send within DROP_GRACE (a catch-up or check under way, a notification
        # crossing our unsubscribe) is expected, and passed over rather than quarantined.
        self._dropped: dict[str, float] = {}
        # One catch-up per node at a time: a second caller (rediscovery, or the sync after a reconnection)
        # waits for the one under way instead of starting another or going on as if it were done.
        self._node_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._last_noted: dict[tuple[str, str], float] = {}
        # Shared by every node's catch-up (a service's window by its nodes'): nodes are caught up side
        # by side, so that one node's tail of fetches does not leave the link idle (BENCHMARKS.md §5).
        self._fetch_windows: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(FETCH_WINDOW))  # per service
        self._fetch_window = asyncio.Semaphore(FETCH_WINDOW_ALL)
        self._list_windows: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(LIST_WINDOW))  # per service
        self._missing: dict[tuple[str, str], set[str]] = {}  # per node: listed, not held, at the last check
        self.pace = ListingPace()  # which node the next check lists, and when (``recheck``)
        self.sweep = Sweep()  # which held items each check fetches again (``catch_up``)
        self.peers = PeerNotes(store)

    def on_item(self, service: str, node: str, item_id: str, payload: ET.Element | None) -> None:
        if self._just_dropped(service):
            log.debug("passed over item %s on %s/%s: no longer followed", item_id, service, node)
            return
        data = None if payload is None else wire_bytes(payload)
        if not self.config.sources.follows(service):
            # Anyone can send the component a message shaped like a notification; only the services in
            # `subscriptions` are sources. Kept, like every refused item, with its reason.
            message = f"{service} is not one of the subscriptions (subscriptions[].service)"
            self.store.add_reject(Refused("xmpp", "unknown-source", message, data or b"",
                                          ItemRef(service, node, item_id)))
            log.warning("quarantined item %s on %s/%s: unknown-source: not one of the subscriptions",
                        item_id, service, node)
            return
        self._note_contact(service, node)
        self.peers.answered(service)
        existing = self.store.find_entry(service, node, item_id)
        if data is not None and existing is not None and not existing.deleted and existing.xml == data:
            # Exactly the bytes already verified and mirrored: a catch-up refetch or a duplicate
            # notification. Skipping it keeps catch-up cheap and changes nothing.
            return
        if self.own_echo is not None and self.own_echo(data):
            log.debug("passed over item %s on %s/%s: our own, relayed back", item_id, service, node)
            self._echoes.setdefault((service, node), set()).add(item_id)
            return
        ref = ItemRef(service, node, item_id)
        outcome = receive_item(self.store, self.trust, ref, data, max_bytes=self.config.max_document_bytes,
                               schema_mode=self.config.schema_mode, member_of=self.member_of)
        if self.relay is not None and data is not None and outcome.checked is not None \
                and outcome.status != "unchanged":
            # In the batch that stored it: the item and its relay are committed together (paths/hub.py).
            self.relay(ref, data, outcome.checked)

    def _note_contact(self, service: str, node: str) -> None:
        """Record when a node last sent something, at most every few seconds (a write per item would
        double the cost of a burst)."""
        now = time.monotonic()
        if now - self._last_noted.get((service, node), -CONTACT_NOTE_INTERVAL) >= CONTACT_NOTE_INTERVAL:
            self._last_noted[(service, node)] = now
            self.store.record_item(service, node)

    def on_retract(self, service: str, node: str, item_id: str) -> None:
        if self._just_dropped(service):
            return
        if not self.config.sources.follows(service):
            log.warning("ignored the retraction of %s on %s/%s: not one of the subscriptions", item_id,
                        service, node)
            return
        self._retract(service, node, item_id)

    def _retract(self, service: str, node: str, item_id: str) -> None:
        if self.store.mark_deleted(service, node, item_id):
            log.info("retracted item %s on %s/%s", item_id, service, node)
            if self.retract_relayed is not None:
                self.retract_relayed(ItemRef(service, node, item_id))


    async def follow(self, config: Config, xmpp: BridgeComponent, dropped: Iterable[str]) -> None:
        """A reload: verify with ``config``'s trust and follow its subscriptions from now on. Nodes of the
        ``dropped`` services (members that left, or no longer followed) are unsubscribed, so that their
        services stop notifying us (what is still on its way from them is passed over); services newly
        followed are subscribed to and caught up at once rather than at the next discovery."""
        self.config, self.trust = config, config.trust
        self.member_of = member_names(config.registry)
        gone = set(dropped)
        self._dropped.update(dict.fromkeys(gone, time.monotonic()))
        for service in config.sources.services:
            self._dropped.pop(service, None)  # followed again
        leaving = {key for key in self._synced if key[0] in gone}
        self._synced -= leaving
        self._cancel |= leaving
        for key in leaving:
            self._missing.pop(key, None)
            self.sweep.forget(key)
        if xmpp.online.is_set():
            await self._cancel_dropped(xmpp)
            await self.subscribe_all(xmpp)

    def _just_dropped(self, service: str) -> bool:
        """Dropped by a reload, and its unsubscription pending or within DROP_GRACE: after that, what a
        former source sends is quarantined as ``unknown-source`` like anyone's."""
        since = self._dropped.get(service)
        if since is None:
            return False
        return time.monotonic() - since < DROP_GRACE or any(key[0] == service for key in self._cancel)

    async def _cancel_dropped(self, xmpp: BridgeComponent) -> None:
        """Unsubscribe from the nodes of services dropped by a reload; those the link was down for are
        tried again after the next connect (the remote service keeps a subscription until told)."""
        for key in sorted(self._cancel):
            if key[0] in self.config.sources.services:
                self._cancel.discard(key)  # followed again since
                continue
            try:
                # After a subscription or check of the node under way: it does not subscribe us again.
                async with self._node_locks.setdefault(key, asyncio.Lock()):
                    await xmpp.unsubscribe(*key)
            except Exception as exc:  # noqa: BLE001 - a peer that is away, or has already dropped us
                failure = peer_failure(exc)
                if failure is None or not classify(failure.condition).reachable:
                    log.info("cannot unsubscribe from %s on %s yet: %s", key[1], key[0], explain(exc))
                    continue  # tried again after the next connect
                # It answered no (not subscribed, no such node): nothing is left to cancel.
                log.info("unsubscribing from %s on %s: %s", key[1], key[0], explain(exc))
            else:
                log.info("unsubscribed from %s on %s: no longer followed", key[1], key[0])
            self._cancel.discard(key)

    def batch(self) -> AbstractContextManager[None]:
        return self.store.batch()

    async def sync_all(self, xmpp: BridgeComponent) -> None:
        """After a (re)connection: subscribe again (idempotent) and catch up on every node."""
        self._synced.clear()
        self._asked_again.clear()
        await self._cancel_dropped(xmpp)
        await self.subscribe_all(xmpp)

    async def subscribe_all(self, xmpp: BridgeComponent) -> None:
        await asyncio.gather(*(self._subscribe_peer(xmpp, s) for s in self.config.subscriptions))

    async def _subscribe_peer(self, xmpp: BridgeComponent, subscription: Subscription) -> None:
        try:
            service = subscription.service
            # Nodes subscribed to in this connection are known IODEF nodes: no disco#info for them.
            nodes = subscription.nodes or await xmpp.discover_iodef_nodes(
                service, known={node for s, node in self._synced if s == service})
        except Exception as exc:  # noqa: BLE001 - one unreachable peer must not stop the others
            log.warning("cannot discover nodes of %s: %s", subscription.service, explain(exc))
            self.peers.failed(subscription.service, exc)
            return
        if subscription.nodes is None:
            self.peers.answered(subscription.service)
        await asyncio.gather(*(self._subscribe(xmpp, subscription, node) for node in nodes))

    async def _subscribe(self, xmpp: BridgeComponent, subscription: Subscription, node: str) -> None:
        service = subscription.service
        key = (service, node)
        async with self._node_locks.setdefault(key, asyncio.Lock()):
            if key in self._synced or service in self._dropped:
                return  # done, or dropped by a reload since the round began
            try:
                if key in self._not_renewed and not await self._asks(xmpp, key):
                    return  # the owner removed us: not even after a reconnection, until it lists us again
                # A request left pending is made anew, once per node and connection (component.subscribe).
                ask_again = key not in self._asked_again
                self._asked_again.add(key)
                state = await xmpp.subscribe(service, node, ask_again=ask_again)
                self.store.record_subscribed(service, node)
                # Subscribe first, then catch up: an item published in between arrives twice, which the
                # store absorbs (same item id, same bytes -> "unchanged"); the other order could miss it.
                result = await self.catch_up(xmpp, service, node, remote_capacity=subscription.max_items)
            except Exception as exc:  # noqa: BLE001 - logged; retried at the next discovery round
                log.warning("cannot subscribe to %s on %s: %s", node, service, explain(exc))
                self.peers.failed(service, exc)
                return
            self._synced.add(key)
            self.peers.answered(service)
        if state == "pending":  # RFC 8600 authorize: the owner decides; renewals ask again while members
            self._held_for_owner.add(key)
            self._awaiting_owner.add(key)
            self._pending_seen.set()
            log.info("subscription to %s on %s is pending the owner's approval: %d items readable there",
                     node, service, result.listed)
            return
        self._awaiting_owner.discard(key)  # let in since an earlier request: the catch-up above had it all
        log.info("subscribed to %s on %s: %d items there, %d retracted while away", node, service,
                 result.listed, result.retracted)

    async def catch_up(self, xmpp: BridgeComponent, service: str, node: str, *,
                       remote_capacity: int, kind: Reconciling = "catch-up") -> CatchUp:
        """Reconcile with the remote node. A ``check`` (the periodic one) fetches the ids we did not hold
        at this check and the one before, or, if still missing one round later, the next round's
        ``_follow_up``, and a share of what we hold, in turn, for revisions whose notification was lost
        (``sweep.Sweep``). An ``approval`` fetches what we do not hold now (an item also on its way as a
        notification is then stored once, the second copy being "unchanged"). A ``catch-up`` fetches
        every item again, which also picks up items republished with new content while we were away.

        The periodic check does not fetch items held in the quarantine either: verifying the same refused
        bytes again is wasted work, and used to count the refusal again at every check. It counts them as
        seen again (``seen_count``) instead; the catch-up after a reconnection still fetches them."""
        only_missing = kind != "catch-up"
        async with self._list_windows[service]:
            # What we hold is read *before* the remote listing: an item that arrives while the listing
            # is on its way was published after the listing was made, and must not count as retracted.
            states = self.store.item_states(service, node)
            quarantined = self.store.held_reject_ids(service, node) if only_missing else set()
            started = time.monotonic()
            ids = await xmpp.list_item_ids(service, node)
            answered = time.monotonic()
            self.pace.listed(service, answered - started, answered)
        if only_missing:
            held = {s.item_id for s in states if not s.deleted}
            offered_again = [item_id for item_id in ids if item_id in quarantined and item_id not in held]
            if offered_again:
                self.store.reject_seen_again(service, node, offered_again)
            missing = self._lacking((service, node), ids, held, quarantined)
            # During a burst, many listed items are still on their way as notifications; fetching them
            # would double the work exactly when the bridge is busiest. An item missing at two checks
            # in a row was lost (a remote restart, say) and is fetched now.
            suspects = self._missing.get((service, node), set()) if kind == "check" else missing
            self._missing[(service, node)] = missing - suspects
            to_fetch = [item_id for item_id in ids if item_id in missing & suspects]
            swept = self.sweep.take((service, node), [i for i in ids if i in held]) if kind == "check" else []
        else:
            to_fetch, swept = ids, []

        await asyncio.gather(*(self._fetch(xmpp, service, node, item_id) for item_id in to_fetch))
        if swept:
            # The pause follows what the check costs the peer: the listing, and the sweep's fetches of
            # bytes we hold (what was missing is verified as it comes, and that time is ours).
            sweeping = time.monotonic()
            await asyncio.gather(*(self._fetch(xmpp, service, node, item_id) for item_id in swept))
            done = time.monotonic()
            self.pace.listed(service, (answered - started) + (done - sweeping), done)
        gone = retracted_while_away(states, ids, remote_capacity=remote_capacity)
        if gone and not await self._really_gone(xmpp, service, node, gone[0], len(gone)):
            gone = []
        for item_id in gone:
            self._retract(service, node, item_id)
        self.store.record_sync(service, node)
        return CatchUp(len(ids), len(to_fetch), len(gone))

    def _lacking(self, key: tuple[str, str], ids: Iterable[str], held: set[str],
                 quarantined: set[str]) -> set[str]:
        """Of ``ids`` listed on ``key``'s node, those a check should fetch: not held, not refused before
        (the quarantine keeps them), and not our own items relayed back to us (``_echoes``)."""
        echoes = self._echoes.get(key, set())
        return {item_id for item_id in ids if item_id not in held and item_id not in quarantined
                and item_id not in echoes}

    async def _fetch(self, xmpp: BridgeComponent, service: str, node: str, item_id: str) -> bool:
        async with self._fetch_windows[service], self._fetch_window:
            return await xmpp.fetch_item(service, node, item_id)

    async def _really_gone(self, xmpp: BridgeComponent, service: str, node: str, item_id: str,
                           count: int) -> bool:
        """Whether the listing's word that our items are gone holds, asked of one of them. ejabberd 23.01
        answers disco#items on a node it no longer lets us read (our affiliation removed: we left the
        consortium, or its audience) with an empty list rather than an error, as Prosody does
        (INTEROP.md); the items request is refused then, and what we mirrored is not retracted for it."""
        try:
            present = await xmpp.fetch_item(service, node, item_id)
        except PublishFailed as exc:
            if exc.transient:
                raise
            if exc.condition == "item-not-found":  # how a server may say it is gone (RFC 6120 §8.3.3.7)
                return True
            log.info("not taking %d items of %s on %s for retracted: the node is listed without them, but "
                     "asking for %s is refused (%s): we may no longer read it", count, node, service,
                     item_id, exc.condition)
            return False
        return not present  # there after all (the fetch mirrored it): the listing was short

    async def rediscover(self, xmpp: BridgeComponent) -> None:
        """Every ``discovery_interval``: pick up nodes a peer created since, and retry subscriptions that
        failed. Nodes already followed cost nothing more than the peer's one disco#items
        (``discover_iodef_nodes``'s ``known``)."""
        while True:
            await asyncio.sleep(self.config.discovery_interval)
            if xmpp.online.is_set():
                await self.subscribe_all(xmpp)

    async def recheck(self, xmpp: BridgeComponent) -> None:
        """Every ``check_interval``: renew the subscriptions we hold and check one node against its
        remote listing. This matters when the *remote* server restarted: our own link never dropped, so
        nothing else tells us that notifications may have been lost or subscriptions forgotten.

        One node per round (every ``check_interval``, give or take a fifth: ``listing.round_delay``), in
        turn, and on its own interval rather than discovery's, because listing a
        node costs its server a load of every item (Prosody 0.12: about 3 s of CPU for 5000 items);
        listing all twenty nodes of a busy peer every round kept that server at full CPU and slowed its
        real work to a third (BENCHMARKS.md §5). A service is listed again only once its last listing's
        pause is over (``listing.ListingPace``): the round checks the next node in turn of the next
        service in turn that may be listed, or none."""
        while True:
            await asyncio.sleep(round_delay(self.config.check_interval))  # not in step with other bridges
            if not xmpp.online.is_set():
                continue
            await self._renew_subscriptions(xmpp)
            await self._follow_up(xmpp)
            turn = self.pace.next_node(self._synced, time.monotonic(), self.config.check_interval,
                                       self.config.check_pause)
            if turn is not None:
                await self._check(xmpp, *turn)

    async def _follow_up(self, xmpp: BridgeComponent) -> None:
        """Fetch what the last check of a node found missing and we still lack a round later: its
        notification was lost, not on its way. Without listing the node again: a paced listing may be
        minutes away (``listing.ListingPace``), and a second listing would cost the peer as much as the
        first."""
        for key in sorted(self._missing):
            service, node = key
            if key not in self._synced or not self._missing[key]:
                continue
            held = {s.item_id for s in self.store.item_states(service, node) if not s.deleted}
            quarantined = self.store.held_reject_ids(service, node)
            lost = sorted(self._lacking(key, self._missing[key], held, quarantined))
            if not lost:
                self._missing[key] = set()
                continue
            try:
                async with self._node_locks.setdefault(key, asyncio.Lock()):
                    found = await asyncio.gather(*(self._fetch_if_there(xmpp, service, node, item_id)
                                                   for item_id in lost))
            except Exception as exc:  # noqa: BLE001 - a peer being away is normal; try again next round
                log.debug("fetching what %s on %s lacked failed: %s", node, service, explain(exc))
                self.peers.failed(service, exc)
                continue
            self._missing[key] = set()
            self.peers.answered(service)
            log.info("caught up on %s on %s: %d missing items fetched", node, service, sum(found))

    async def _fetch_if_there(self, xmpp: BridgeComponent, service: str, node: str, item_id: str) -> bool:
        """Fetch one item a check listed; False if it is gone since (retracted) or refused: the node's
        next listing says what is there then, rather than this item being asked for at every round."""
        try:
            return await self._fetch(xmpp, service, node, item_id)
        except PublishFailed as exc:
            if exc.transient:
                raise
            log.debug("not fetching %s of %s on %s: %s", item_id, node, service, exc.condition)
            return False

    async def _renew_subscriptions(self, xmpp: BridgeComponent) -> None:
        """Subscribe again where a service no longer lists a subscription of ours: a remote server with
        non-persistent subscriptions forgets them when it restarts, and a request still pending on a node
        we may read (we are in its audience, so the owner approves at once) is made anew, its form or
        approval lost (``component.subscribe``). Each service is asked once for all our subscriptions
        (XEP-0060 §5.6), and only nodes it does not list as subscribed are renewed (``_renew``): a round
        costs a peer one request, not one per node (SCALING.md). A service that does not answer that
        request has every node renewed, as before."""
        for service in sorted({service for service, _ in self._synced}):
            try:
                listed = await xmpp.subscriptions(service)
            except Exception as exc:  # noqa: BLE001 - a peer being away is normal; try again next round
                log.debug("asking %s for our subscriptions failed: %s", service, explain(exc))
                self.peers.failed(service, exc)
                continue
            self.peers.answered(service)
            for node in sorted(node for s, node in self._synced if s == service):
                key = (service, node)
                if key not in self._synced:
                    continue  # dropped by a reload during the round
                if listed is not None and key not in self._not_renewed \
                        and still_subscribed(listed.get(node, "none")):
                    if key in self._awaiting_owner and listed.get(node) == "subscribed":
                        await self._approved(xmpp, key)
                    continue
                await self._renew(xmpp, key)

    async def watch_approvals(self, xmpp: BridgeComponent) -> None:
        """Soon after a request is left pending (``APPROVAL_LOOKS``), ask its service whether the owner
        let it in, rather than at the next renewal round (``check_interval``, 60 s): until then an item
        published on the node reaches us at that round only. In a warm-up burst at an ejabberd hub, or
        between the hubs of a tree, that was a minute's delay for the odd item (SCALING.md)."""
        while True:
            await self._pending_seen.wait()
            self._pending_seen.clear()
            for delay in APPROVAL_LOOKS:
                await asyncio.sleep(delay)
                if xmpp.online.is_set() and not await self._look_for_approvals(xmpp):
                    break

    async def _look_for_approvals(self, xmpp: BridgeComponent) -> bool:
        """Catch up on the pending nodes each service now lists as subscribed (one request per service);
        whether any request is still pending."""
        for service in sorted({service for service, _ in self._awaiting_owner}):
            try:
                listed = await xmpp.subscriptions(service)
            except Exception as exc:  # noqa: BLE001 - the renewal round asks again
                log.debug("asking %s for our subscriptions failed: %s", service, explain(exc))
                continue
            if listed is None:
                continue  # the service does not say: the renewal round renews them all
            for node in sorted(node for s, node in self._awaiting_owner if s == service):
                # Still awaited: a renewal round may have seen it approved during our awaits.
                if listed.get(node) == "subscribed" and (service, node) in self._awaiting_owner:
                    await self._approved(xmpp, (service, node))
        return bool(self._awaiting_owner)

    async def _approved(self, xmpp: BridgeComponent, key: tuple[str, str]) -> None:
        """The owner let a pending subscription in. What was published between our catch-up (made while
        the request was pending) and the approval came to nobody's notification: fetch what the node
        lists and we lack, now, rather than after two periodic checks of it (each node's turn comes once
        in as many rounds as we follow nodes: 8 minutes at a spoke of 4 hub nodes, SCALING.md)."""
        service, node = key
        # Before the first await: a renewal round and ``watch_approvals`` may both see it approved.
        self._awaiting_owner.discard(key)
        result = await self._check(xmpp, service, node, kind="approval")
        if result is None:
            self._awaiting_owner.add(key)  # tried again next round
            return
        log.info("subscription to %s on %s approved by its owner: %d items there, %d fetched that came "
                 "while it was pending", node, service, result.listed, result.fetched)

    async def _renew(self, xmpp: BridgeComponent, key: tuple[str, str]) -> None:
        """Subscribe to a node we follow again. Nodes the owner keeps us out of are not followed, so they
        are not asked again here; nor are authorize nodes whose owner removed us, as when we left the
        consortium (``renews``): the owner's operator hears nothing more from us, until the service lists
        us as a member again."""
        service, node = key
        try:
            if not await self._asks(xmpp, key):
                return
            await xmpp.subscribe(service, node, ask_again=True)
        except Exception as exc:  # noqa: BLE001 - a peer being away is normal; try again next round
            log.debug("renewing the subscription to %s on %s failed: %s", node, service, explain(exc))
            self.peers.failed(service, exc)
        else:
            self.peers.answered(service)

    async def _asks(self, xmpp: BridgeComponent, key: tuple[str, str]) -> bool:
        """``renews`` for a node, asking its service for our affiliation where that matters; a change
        either way is logged once."""
        held = key in self._held_for_owner
        if renews(held, await xmpp.affiliation(*key) if held else None):
            if key in self._not_renewed:
                self._not_renewed.discard(key)
                log.info("renewing the subscription to %s on %s again: the service lists us as a member",
                         key[1], key[0])
            return True
        if key not in self._not_renewed:
            self._not_renewed.add(key)
            log.info("no longer renewing the subscription to %s on %s: the service does not list us as a "
                     "member of the node (its owner removed us, or has not let us in) and would hold every "
                     "request for its operator", key[1], key[0])
        return False

    async def _check(self, xmpp: BridgeComponent, service: str, node: str, *,
                     kind: Reconciling = "check") -> CatchUp | None:
        """Fetch what ``node`` lists and we lack (``catch_up``'s ``check`` or ``approval``); None if the
        service is no longer configured or the check failed."""
        subscription = next((s for s in self.config.subscriptions if s.service == service), None)
        if subscription is None:
            return None  # no longer configured
        try:
            async with self._node_locks.setdefault((service, node), asyncio.Lock()):
                result = await self.catch_up(xmpp, service, node, remote_capacity=subscription.max_items,
                                             kind=kind)
        except Exception as exc:  # noqa: BLE001 - a peer being away is normal; try again next round
            log.debug("checking %s on %s failed: %s", node, service, explain(exc))
            self.peers.failed(service, exc)
            return None
        self.peers.answered(service)
        if result.fetched or result.retracted:
            log.info("caught up on %s on %s: %d missing items fetched, %d retracted", node, service,
                     result.fetched, result.retracted)
        return result
