"""``xmppbridge members pending|list|approve|deny``: the operator's side of subscription approval
(``xmpp.approvals``). The CLI writes a decision into the store; the running bridge sends it to the
pubsub service and marks it sent, which the CLI waits for, so that it can say what happened."""

from __future__ import annotations

import getpass
import time

from xmppbridge.config.settings import Config
from xmppbridge.store.approvals import APPROVED, DENIED, PENDING, STATES, Approval
from xmppbridge.store.contracts import Approvals

SENT_POLL = 0.2


def format_approval(approval: Approval) -> str:
    asked = f"{approval.requested_at:%Y-%m-%dT%H:%M:%SZ}"
    line = (f"{approval.node} {approval.jid} {approval.state}, asked {asked}"
            + (f" ({approval.requests}x)" if approval.requests > 1 else ""))
    if approval.state != PENDING and approval.decided_at is not None:
        line += f", by {approval.decided_by} at {approval.decided_at:%Y-%m-%dT%H:%M:%SZ}"
        line += "" if approval.sent_at else " (not sent yet: the bridge sends it when it runs)"
    return line


def pending_lines(store: Approvals) -> list[str]:
    rows = store.approvals((PENDING,))
    if not rows:
        return ["no subscription requests pending"]
    return [format_approval(row) for row in rows]


def list_lines(config: Config, store: Approvals) -> list[str]:
    """The registry's members, then every request an operator has seen or decided."""
    lines = [f"member {m.name} {m.bridge}" + (" (this bridge)" if m.name == config.registry.own else "")
             for m in config.registry.members]
    lines += [format_approval(row) for row in store.approvals(STATES)]
    return lines or ["no members in the registry, and no subscription requests"]


def decide(store: Approvals, node: str, jid: str, approve: bool, *, timeout: float) -> tuple[bool, str]:
    """Record the decision and wait up to ``timeout`` for the running bridge to send it: (ok, message)."""
    jid = jid.strip().lower()
    state = APPROVED if approve else DENIED
    decision = store.decide_approval(node, jid, state, f"cli:{getpass.getuser()}")
    if decision is None:
        return False, (f"no subscription request from {jid} to {node} is recorded "
                       "(`xmppbridge members pending` lists them)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = store.approval(node, jid)
        if current is not None and current.sent_at is not None:
            return True, f"{jid} {state} on {node}: sent to the pubsub service"
        time.sleep(SENT_POLL)
    return True, (f"{jid} {state} on {node}: recorded; the bridge has not sent it within {timeout:.0f} s "
                  "(it is not running or not connected) and sends it when it is")
