"""Record each peer's health as the mirror talks to it (decided in ``peers``)."""

from __future__ import annotations

import time

from xmppbridge.peers import OK, Outcome, classify, must_write
from xmppbridge.store.contracts import PeerRecords
from xmppbridge.xmpp.component import peer_failure

# A peer whose state does not change is written at most this often: enough for "last checked" to
# mean something, not a write per item of a busy stream.
PEER_NOTE_INTERVAL = 30.0


class PeerNotes:
    def __init__(self, store: PeerRecords) -> None:
        self.store = store
        self._written: dict[str, tuple[Outcome, float]] = {}  # per service: last stored, monotonic time

    def answered(self, service: str) -> None:
        """A request to ``service`` succeeded, or it sent us something."""
        self._note(service, OK)

    def failed(self, service: str, exc: BaseException) -> None:
        """A request to ``service`` raised ``exc``; recorded if it says something about the peer."""
        error = peer_failure(exc)
        if error is not None:
            self._note(service, classify(error.condition, error.text))

    def _note(self, service: str, outcome: Outcome) -> None:
        now = time.monotonic()
        written, at = self._written.get(service, (None, float("-inf")))
        if must_write(written, outcome, now - at, PEER_NOTE_INTERVAL):
            self._written[service] = (outcome, now)
            self.store.record_peer(service, outcome)
