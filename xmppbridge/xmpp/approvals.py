"""Approval of subscriptions to our nodes (RFC 8600 §8.3.4 ``authorize``, XEP-0060 §8.6-§8.8).

Where our pubsub service offers the ``authorize`` access model (ejabberd does, Prosody 0.12 does not)
and ``pubsub.approval`` is ``auto``, non-public nodes are created with it. ejabberd then holds every
subscription request, also from bridges affiliated as members, and asks the node's owner (this
component) with a §8.6 form. This desk answers:

- a bridge in the node's audience is approved at once (it may read the node anyway);
- any other bridge's request is held: stored as pending (``store.approvals``), written to the audit
  log, counted in /metrics and announced to the admins in chat; an operator decides with
  ``xmppbridge members approve|deny`` (which writes the decision into the store) or the ad-hoc
  commands, and the desk sends the decision to the service;
- a bridge asking again after a decision gets the same answer, without a new notice.

Requests that came while we were offline are asked for again with get-pending (§8.7) at every
(re)connection, so none stays pending unseen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from xml.etree import ElementTree as ET

from slixmpp.exceptions import IqError, IqTimeout

from xmppbridge.chat.service import Notice
from xmppbridge.config.settings import Config
from xmppbridge.store.approvals import APPROVED, DENIED, PENDING, Approval
from xmppbridge.store.contracts import Approvals
from xmppbridge.xmpp.authorization import (
    AUTHORIZE_FEATURE,
    GET_PENDING,
    UNSUPPORTED,
    AuthorizationRequest,
    authorization_answer,
)
from xmppbridge.xmpp.component import IQ_TIMEOUT, BridgeComponent, explain

log = logging.getLogger(__name__)
audit = logging.getLogger("xmppbridge.audit")

POLL_INTERVAL = 1.0  # seconds between looks for decisions the CLI wrote into the store
_COMMANDS_NS = "http://jabber.org/protocol/commands"


class ApprovalDesk:
    def __init__(self, config: Config, store: Approvals, xmpp: BridgeComponent,
                 notify: Callable[[Notice], None]) -> None:
        self.config, self.store, self.xmpp, self.notify = config, store, xmpp, notify
        self.probed = asyncio.Event()  # set once we know whether our service offers authorize
        self.active = False
        xmpp.on_authorization = self._on_request
        self._tasks: set[asyncio.Task[None]] = set()
        self._answered: set[tuple[str, str, datetime | None]] = set()  # repeated requests answered

    async def access_model(self, model: str) -> str:
        """The access model for a node whose policy says ``model``: ``authorize`` instead of
        ``whitelist`` while approval is active. Waits for the first probe of our service."""
        if model != "whitelist" or self.config.approval == "off":
            return model
        await self.probed.wait()
        return "authorize" if self.active else model

    # -- at every (re)connection ------------------------------------------------------------------

    async def on_session(self) -> None:
        """Probe our service for authorize (once), then ask it for the requests still pending."""
        if self.config.approval == "off":
            self.probed.set()
            return
        if not self.probed.is_set():
            self.active = await self._supported()
            self.probed.set()
            if not self.active:
                log.warning("pubsub.approval is auto but %s does not offer the authorize access model: "
                            "%s; nodes stay whitelist", self.config.pubsub_service, UNSUPPORTED)
                return
            log.info("approval active: non-public nodes on %s use the authorize access model",
                     self.config.pubsub_service)
        if self.active:
            await self._get_pending()

    async def _supported(self) -> bool:
        try:
            info = await self.xmpp.plugin["xep_0030"].get_info(
                jid=self.config.pubsub_service, ifrom=self.xmpp.boundjid.bare, timeout=IQ_TIMEOUT,
                cached=False)
        except (IqError, IqTimeout) as exc:
            log.warning("disco#info of %s failed (%s): approval stays off until the next connection",
                        self.config.pubsub_service, explain(exc))
            return False
        return AUTHORIZE_FEATURE in info["disco_info"]["features"]

    async def _get_pending(self) -> None:
        """§8.7: the service lists the nodes with pending requests, then resends their §8.6 forms."""
        service, me = self.config.pubsub_service, self.xmpp.boundjid.bare
        try:
            first = await self._command(service, me, "")
            nodes = [value.text or "" for value in first.iter("{jabber:x:data}value")
                     if value.text and value.text != "http://jabber.org/protocol/pubsub#subscribe_authorization"]
            session = first.find(f"{{{_COMMANDS_NS}}}command")
            session_id = "" if session is None else session.get("sessionid", "")
            for node in dict.fromkeys(nodes):
                await self._command(service, me, session_id, node)
            log.info("asked %s for the subscription requests still pending: on %d node(s)", service,
                     len(set(nodes)))
        except (IqError, IqTimeout) as exc:
            log.warning("asking %s for pending subscription requests failed: %s", service, explain(exc))

    async def _command(self, service: str, me: str, session_id: str, node: str | None = None) -> ET.Element:
        iq = self.xmpp.make_iq_set(ito=service, ifrom=me)
        iq["command"]["node"] = GET_PENDING
        iq["command"]["action"] = "execute"
        if session_id:
            iq["command"]["sessionid"] = session_id
        if node is not None:
            form = self.xmpp.plugin["xep_0004"].make_form(ftype="submit")
            form.add_field(var="pubsub#node", value=node)
            iq["command"].append(form)
        answer = await iq.send(timeout=IQ_TIMEOUT)
        return answer.xml

    # -- requests ---------------------------------------------------------------------------------

    def _on_request(self, request: AuthorizationRequest) -> None:
        """Called by the component for each §8.6 form, in stream order; the answer may need the store."""
        task = asyncio.get_running_loop().create_task(self._handle(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, request: AuthorizationRequest) -> None:
        if request.service != self.config.pubsub_service:
            log.warning("ignored a subscription authorization request from %s about %s: not our pubsub "
                        "service", request.service, request.node)
            return
        try:
            self._decide(request)
        except Exception:  # noqa: BLE001 - the request is still pending at the service: get-pending asks again
            log.exception("handling the subscription request of %s to %s failed", request.subscriber,
                          request.node)

    def _decide(self, request: AuthorizationRequest) -> None:
        node, jid = request.node, request.subscriber
        if jid in self.config.node_audience(node).bridges:
            # A request held before the bridge joined the audience (a config change) is moot now.
            withdrawn = self.store.withdraw_approval_request(node, jid)
            audit.info("audit: approval %s on %s approved: in the node's audience%s", jid, node,
                       " (its held request withdrawn)" if withdrawn else "")
            self._send(request, allow=True)
            return
        row = self.store.approval_requested(node, jid, request.subid)
        if row.state == PENDING:
            if row.requests == 1:
                audit.info("audit: approval %s on %s held: not in the node's audience; decide with "
                           "`xmppbridge members approve|deny`", jid, node)
                self._tell_admins(f"{jid} asks to subscribe to {node}, which its audience does not include. "
                                  f"Decide with `xmppbridge members approve {node} {jid}` (or deny), or the "
                                  "ad-hoc command 'Decide a subscription request'.")
            else:
                log.info("subscription request of %s to %s is still pending (asked %d times)", jid, node,
                         row.requests)
            return
        # A denied bridge asks again at each of its subscription renewals (every check_interval): the
        # audit log says it once per decision, the debug log every time.
        said = (node, jid, row.decided_at)
        (audit.debug if said in self._answered else audit.info)(
            "audit: approval %s on %s %s again: decided by %s at %s", jid, node, row.state, row.decided_by,
            f"{row.decided_at:%Y-%m-%dT%H:%M:%SZ}" if row.decided_at else "?")
        self._answered.add(said)
        self._send(request, allow=row.state == APPROVED)

    def _send(self, request: AuthorizationRequest, *, allow: bool) -> None:
        self.xmpp.send_raw(authorization_answer(self.xmpp.boundjid.bare, request, allow))

    def _tell_admins(self, text: str) -> None:
        admins = sorted(self.config.operators.admins)
        for admin in admins:
            self.notify(Notice(admin, text))
        log.info("told the admins in chat: %s", ", ".join(admins) or "none configured (admins:)")

    # -- decisions written by the CLI or the ad-hoc commands ----------------------------------------

    async def run(self) -> None:
        """Send the decisions the store holds that have not gone out yet, while connected."""
        while True:
            await self.xmpp.online.wait()
            await self.probed.wait()
            try:
                for decision in self.store.undelivered_decisions():
                    await self.deliver(decision)
            except Exception:  # noqa: BLE001 - e.g. the store locked by another process: next round
                log.exception("sending subscription decisions failed")
            await asyncio.sleep(POLL_INTERVAL)

    async def deliver(self, decision: Approval) -> None:
        """§8.6 answer to the pending request; for a denial also §8.8.2 ``none``, which cancels a
        subscription approved earlier (the service answers an error when there is none: nothing to do)."""
        service = self.config.pubsub_service
        request = AuthorizationRequest(service, decision.node, decision.jid, decision.subid)
        allow = decision.state == APPROVED
        self._send(request, allow=allow)
        if decision.state == DENIED:
            try:
                await self.xmpp.pubsub.modify_subscriptions(
                    self.config.pubsub_service, decision.node, subscriptions=[(decision.jid, "none")],
                    ifrom=self.xmpp.boundjid.bare, timeout=IQ_TIMEOUT)
            except IqError:
                pass  # not subscribed: the §8.6 answer was all it took
            except IqTimeout:
                return  # sent again at the next round
        self.store.approval_sent(decision)
        audit.info("audit: approval %s on %s %s by %s, sent to %s", decision.jid, decision.node,
                   decision.state, decision.decided_by, service)

