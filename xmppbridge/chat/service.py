"""The chat core: answer a person's command, and decide who hears about a new or updated incident.

Every answer goes through the policy (``policy.may``: a JID's rights, the feed's kind of rights) and the
store's readable filter, so a person never learns of an entry, not even that it exists, outside their
rights.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from xmppbridge.chat.commands import HELP, Command, CommandError, parse
from xmppbridge.chat.ratelimit import RateLimiter
from xmppbridge.chat.settings import OperatorSettings
from xmppbridge.chat.summary import one_line, summary
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS
from xmppbridge.policy.may import Action, Actor, Decides, category_of
from xmppbridge.policy.rights import Rights
from xmppbridge.store.chatstate import ChatState
from xmppbridge.store.contracts import EntryReads, FeedViews
from xmppbridge.store.entries import Entry
from xmppbridge.store.search import SearchQuery

# A burst of changes (a bulk publish) gives each recipient this many summaries, then one line with the rest.
SUMMARIES_PER_ROUND = 5
CHANGES_PER_ROUND = 500
MAX_COMMAND = 1000  # characters; anything longer is not a command


class ChatReading(EntryReads, FeedViews, Protocol):
    """What chat reads: entries, the change log it announces from, search."""


@dataclass(frozen=True)
class Notice:
    to: str  # a person's bare JID, or a room's JID
    body: str
    room: bool = False


class ChatService:
    def __init__(self, settings: OperatorSettings, policy: Decides, store: ChatReading, state: ChatState,
                 urls: FeedUrls, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.policy, self.store, self.state, self.urls = settings, policy, store, state, urls
        self.limiter = RateLimiter(settings.rate, clock)

    # -- commands ---------------------------------------------------------------------------------------

    def handle(self, jid: str, text: str) -> str | None:
        """The reply to ``text`` from bare ``jid``; None when the sender is over the rate limit again."""
        verdict = self.limiter.check(jid)
        if verdict == "drop":
            return None
        if verdict == "warn":
            return "Slow down: too many commands. Try again in a minute."
        if len(text) > MAX_COMMAND:
            return "That is too long to be a command. Send 'help' for the list of commands."
        try:
            command = parse(text)
        except CommandError as exc:
            return str(exc)
        rights = self.policy.rights(Actor.jid(jid))
        handler = getattr(self, f"_{command.name}")
        return handler(jid, rights, command)

    def _help(self, _jid: str, rights: Rights, _command: Command) -> str:
        return f"{HELP}\n\nYou may see: {describe(rights.pairs)}."

    def _latest(self, _jid: str, rights: Rights, command: Command) -> str:
        entries = self.store.search(SearchQuery(), rights.readable(), limit=command.count)
        if not entries:
            return "No incidents that you may see yet."
        return "\n".join(one_line(entry) for entry in entries)

    def _show(self, jid: str, rights: Rights, command: Command) -> str:
        found = [self._full(entry) for entry in self._lookup(rights, command.argument)]
        found = [entry for entry in found if entry is not None and rights.allows(*_category(entry))]
        if not found:
            # The same answer whether it does not exist or is not for this person: no existence oracle.
            return f"No incident {command.argument} that you may see."
        return "\n\n".join(summary(e, status="current", link=self.urls.entry(e.id)) for e in found)

    def _lookup(self, rights: Rights, reference: str) -> list[Entry]:
        if reference.startswith("#") and reference[1:].isdigit():
            entry = self.store.entry(int(reference[1:]))
            return [] if entry is None or entry.deleted else [entry]
        return self.store.search(SearchQuery(incident_id=reference), rights.readable(),
                                 limit=self.settings.max_results)

    def _full(self, entry: Entry) -> Entry | None:
        """Search results leave the document out; summaries need it for the addresses."""
        return self.store.entry(entry.id) if not entry.xml else entry

    def _search(self, _jid: str, rights: Rights, command: Command) -> str:
        query, readable = SearchQuery(text=command.argument), rights.readable()
        limit = self.settings.max_results
        entries = self.store.search(query, readable, limit=limit)
        if not entries:
            return f"Nothing that you may see matches {command.argument!r}."
        total = self.store.count_matches(query, readable, cap=limit)
        more = f"\n(more than {limit}; narrow the search)" if total > limit else ""
        return "\n".join(one_line(entry) for entry in entries) + more

    def _subscribe(self, jid: str, rights: Rights, command: Command) -> str:
        try:
            wanted = Rights.parse([command.argument]).pairs
        except ValueError as exc:
            return f"Cannot subscribe: {exc}."
        granted = wanted & rights.pairs
        if not granted:
            return f"You may not see {command.argument}. You may see: {describe(rights.pairs)}."
        self.state.subscribe(jid, granted)
        note = f" (not {describe(wanted - granted)}, which you may not see)" if wanted - granted else ""
        return (f"Subscribed to {describe(granted)}{note}. You will get a message for each new or updated "
                "incident.")

    def _unsubscribe(self, jid: str, _rights: Rights, command: Command) -> str:
        try:
            wanted = Rights.parse([command.argument]).pairs
        except ValueError as exc:
            return f"Cannot unsubscribe: {exc}."
        removed = self.state.unsubscribe(jid, wanted)
        left = self.state.subscriptions(jid)
        return (f"Unsubscribed from {removed} categor{'y' if removed == 1 else 'ies'}. "
                f"Still subscribed to: {describe(left) if left else 'nothing'}.")

    def _subscriptions(self, jid: str, _rights: Rights, _command: Command) -> str:
        pairs = self.state.subscriptions(jid)
        paused = " (paused by an operator)" if self.state.is_paused(jid) else ""
        return f"Subscribed to: {describe(pairs)}{paused}." if pairs else "You have no subscriptions."

    # -- notifications ----------------------------------------------------------------------------------

    def notices(self, changes: Iterable[tuple[Entry, str]]) -> list[Notice]:
        """Messages for a batch of changed entries (status "new" or "updated"), in order. A recipient who
        would get more than SUMMARIES_PER_ROUND gets the first ones and one line about the rest."""
        summaries: dict[tuple[str, bool], list[str]] = {}
        more: dict[tuple[str, bool], int] = {}  # per recipient, the changes beyond its summaries
        recipients_of = self._recipients_this_round()
        for entry, status in changes:
            wanting = []
            for recipient in recipients_of(entry):
                if len(summaries.get(recipient, ())) < SUMMARIES_PER_ROUND:
                    wanting.append(recipient)
                else:
                    more[recipient] = more.get(recipient, 0) + 1
            # A summary reads the whole document: written only for someone who will read it, not for
            # nobody (most entries, most sites) nor for a recipient already told "and N more".
            if not wanting:
                continue
            if not entry.xml:  # from the change log, which leaves documents out
                entry = self.store.entry(entry.id)
                if entry is None or entry.deleted:
                    continue  # retracted since
            body = summary(entry, status=status, link=self.urls.entry(entry.id))
            for recipient in wanting:
                summaries.setdefault(recipient, []).append(body)
        notices = []
        for (to, room), bodies in summaries.items():
            notices += [Notice(to, body, room) for body in bodies]
            if more.get((to, room)):
                notices.append(Notice(to, f"... and {more[(to, room)]} more new or updated incidents: "
                                          f"{self.urls.service_document()}", room))
        return notices

    def _recipients_this_round(self) -> Callable[[Entry], list[tuple[str, bool]]]:
        """Who hears about an entry: the subscribers of its category who may see it, and the rooms that
        may. Subscriptions and pauses are read once per round (a burst brings hundreds of entries)."""
        subscribers = functools.cache(self.state.subscribers)
        paused = functools.cache(self.state.is_paused)

        def recipients(entry: Entry) -> list[tuple[str, bool]]:
            category = _category(entry)
            # Rights are checked again now, not only at subscribe time: an allowlist may have shrunk since.
            people = [(jid, False) for jid in subscribers(*category)
                      if self.policy.may(Actor.jid(jid), Action.READ, category)]
            rooms = [(room.room, True) for room in self.settings.rooms if not paused(room.room)
                     and self.policy.may(Actor.room(room.room), Action.READ, category)]
            return people + rooms

        return recipients

    def changes(self) -> list[tuple[Entry, str]]:
        """New and updated entries since the last call, oldest first, from the store's change log
        (``Entry.xml`` left empty).

        The log covers every way an entry changes (mirrored from a peer, published here, released from
        quarantine by another process), and the cursor is kept in the store, so nothing is announced
        twice or lost across a restart. A fresh store starts at the end: history is not announced."""
        found: list[tuple[int, Entry, str]] = []
        # Read together, moved together once every page is read: a failure half way moves none, and a
        # round costs one read and at most one write of them, not one of each per collection.
        cursors = self.state.cursors()
        moved: dict[str, int] = {}
        for collection in RESTRICTIONS:
            cursor = cursors.get(collection)
            if cursor is None:
                moved[collection] = self.store.last_seq(collection)
                continue
            page = sorted(self.store.current_page(collection, None, limit=CHANGES_PER_ROUND, after=cursor),
                          key=lambda change: change.seq)
            for change in page:
                # A current change is the entry as it stands, without its document: enough to find the
                # recipients; ``notices`` reads the document only for entries someone will hear about.
                if not change.entry.deleted:
                    status = "new" if change.entry.revision == 1 else "updated"
                    found.append((change.seq, change.entry, status))
            if page:
                moved[collection] = page[-1].seq
        self.state.set_cursors(moved)
        return [(entry, status) for _seq, entry, status in sorted(found, key=lambda f: f[1].updated_at)]


def describe(pairs: Iterable[tuple[str, str]]) -> str:
    """Categories the way people write them: a restriction alone when it has every purpose."""
    pairs = set(pairs)
    parts = []
    for restriction in RESTRICTIONS:
        purposes = [p for p in PURPOSES if (restriction, p) in pairs]
        if len(purposes) == len(PURPOSES):
            parts.append(restriction)
        else:
            parts += [f"{restriction}/{p}" for p in purposes]
    return ", ".join(parts) or "nothing"


def _category(entry: Entry) -> tuple[str, str]:
    return category_of(entry.restriction, entry.incident.purpose)
