"""Operator commands over XMPP (XEP-0050 ad-hoc commands on the component JID), for admin JIDs only.

- ``status``: what ``xmppbridge status`` prints (``status.status_report``).
- ``pause`` / ``resume``: silence a chat subscriber or a room, and let it speak again.
- ``quarantine-release``: verify every held item again with the current trust configuration and mirror
  what now passes (``quarantine.release``), as ``xmppbridge quarantine release --all`` does.
- ``approval``: list the subscription requests held for approval and decide one (``xmpp.approvals``),
  as ``xmppbridge members pending|approve|deny`` do; the decision is stored and sent like the CLI's.

Any XMPP client with ad-hoc support (Gajim, Psi, Profanity ``/cmd``) runs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slixmpp.exceptions import XMPPError

from xmppbridge.config.settings import Config
from xmppbridge.ops.quarantine import held, release
from xmppbridge.ops.status import format_status, status_report
from xmppbridge.policy.may import Action, Actor, Decides
from xmppbridge.store.approvals import APPROVED, DENIED, PENDING
from xmppbridge.store.chatstate import ChatState
from xmppbridge.store.contracts import Approvals
from xmppbridge.xmpp.component import BridgeComponent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorActions:
    status: Callable[[], str]
    set_paused: Callable[[str, bool], bool]  # (JID, paused) -> whether that changed anything
    release_quarantine: Callable[[], str]
    pending: Callable[[], list[str]]  # "node jid" of each request waiting for a decision
    decide: Callable[[str, str, bool, str], bool]  # (node, jid, approve, admin) -> whether it was asked


def operator_actions(config: Config, store: Approvals, state: ChatState) -> OperatorActions:
    def release_all() -> str:
        results = release(store, config.trust, held(store), max_bytes=config.max_document_bytes,
                          follows=config.sources.follows, schema_mode=config.schema_mode)
        released = sum(r.released for r in results)
        lines = [f"{released} of {len(results)} held item(s) released"]
        lines += [f"#{r.record.id} {r.record.service}/{r.record.node} {r.record.item_id}: "
                  f"{'released' if r.released else 'still held'}: {r.outcome}" for r in results[:20]]
        return "\n".join(lines)

    def decide(node: str, jid: str, approve: bool, admin: str) -> bool:
        return store.decide_approval(node, jid, APPROVED if approve else DENIED, admin) is not None

    return OperatorActions(status=lambda: format_status(status_report(config, store)),
                           set_paused=state.set_paused, release_quarantine=release_all,
                           pending=lambda: [f"{a.node} {a.jid}" for a in store.approvals((PENDING,))],
                           decide=decide)


class AdhocCommands:
    def __init__(self, component: BridgeComponent, policy: Decides, actions: OperatorActions) -> None:
        self.component, self.policy, self.actions = component, policy, actions
        component.register_plugin("xep_0050")
        adhoc, me = component.plugin["xep_0050"], component.boundjid.bare
        adhoc.add_command(jid=me, node="status", name="Bridge status", handler=self._status)
        adhoc.add_command(jid=me, node="pause", name="Pause a subscriber or room", handler=self._pause)
        adhoc.add_command(jid=me, node="resume", name="Resume a subscriber or room", handler=self._resume)
        adhoc.add_command(jid=me, node="quarantine-release", name="Re-verify the quarantine",
                          handler=self._release)
        adhoc.add_command(jid=me, node="approval", name="Decide a subscription request",
                          handler=self._approval)

    def _check(self, iq: Any) -> None:
        if not self.policy.may(Actor.jid(iq["from"].bare), Action.OPERATE):
            log.warning("refused ad-hoc command %s from %s", iq["command"]["node"], iq["from"])
            raise XMPPError("forbidden", text="only the bridge's admins may run this command")

    def _status(self, iq: Any, session: dict[str, Any]) -> dict[str, Any]:
        self._check(iq)
        return _done(session, self.actions.status())

    async def _release(self, iq: Any, session: dict[str, Any]) -> dict[str, Any]:
        self._check(iq)
        # Verifying many items takes a while; the store is safe to use from a worker thread.
        return _done(session, await asyncio.to_thread(self.actions.release_quarantine))

    def _pause(self, iq: Any, session: dict[str, Any]) -> dict[str, Any]:
        return self._ask_jid(iq, session, paused=True)

    def _resume(self, iq: Any, session: dict[str, Any]) -> dict[str, Any]:
        return self._ask_jid(iq, session, paused=False)

    def _ask_jid(self, iq: Any, session: dict[str, Any], *, paused: bool) -> dict[str, Any]:
        self._check(iq)
        form = self.component.plugin["xep_0004"].make_form(
            ftype="form", title="Pause notifications" if paused else "Resume notifications")
        form.add_field(var="jid", ftype="jid-single", label="Subscriber or room JID", required=True)

        def submit(payload: Any, session: dict[str, Any]) -> dict[str, Any]:
            jid = str(payload["values"].get("jid") or "").strip().lower()
            if not jid:
                raise XMPPError("bad-request", text="give a JID")
            changed = self.actions.set_paused(jid, paused)
            word = "paused" if paused else "resumed"
            log.info("%s %s notifications for %s", session["from"].bare, word, jid)
            return _done(session, f"{jid}: {word}" if changed else f"{jid}: already {word}")

        session.update(payload=form, next=submit, has_next=False, allow_complete=True)
        return session

    def _approval(self, iq: Any, session: dict[str, Any]) -> dict[str, Any]:
        """A form with the pending requests to pick from and approve or deny."""
        self._check(iq)
        pending = self.actions.pending()
        if not pending:
            return _done(session, "no subscription requests pending")
        form = self.component.plugin["xep_0004"].make_form(ftype="form",
                                                           title="Decide a subscription request")
        form.add_field(var="request", ftype="list-single", label="Request (node and bridge)", required=True,
                       options=[{"label": p, "value": p} for p in pending])
        form.add_field(var="decision", ftype="list-single", label="Decision", required=True,
                       options=[{"label": "approve", "value": "approve"}, {"label": "deny", "value": "deny"}])

        def submit(payload: Any, session: dict[str, Any]) -> dict[str, Any]:
            values = payload["values"]
            request, decision = str(values.get("request") or ""), str(values.get("decision") or "")
            node, _, jid = request.partition(" ")
            if not jid or decision not in ("approve", "deny"):
                raise XMPPError("bad-request", text="pick a request and approve or deny")
            admin = session["from"].bare
            if not self.actions.decide(node, jid, decision == "approve", admin):
                raise XMPPError("item-not-found", text=f"no subscription request from {jid} to {node}")
            log.info("%s decided to %s %s on %s", admin, decision, jid, node)
            word = "approved" if decision == "approve" else "denied"
            return _done(session, f"{jid} {word} on {node}: the bridge sends it to the pubsub service")

        session.update(payload=form, next=submit, has_next=False, allow_complete=True)
        return session


def _done(session: dict[str, Any], text: str) -> dict[str, Any]:
    session.update(payload=None, next=None, has_next=False, notes=[("info", text)])
    return session


def attach_adhoc(component: BridgeComponent, policy: Decides, actions: OperatorActions) -> AdhocCommands:
    return AdhocCommands(component, policy, actions)
