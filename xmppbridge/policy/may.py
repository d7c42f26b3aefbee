"""The one access decision: may this actor do this action on this category?

In the style of Prosody's util/pubsub.lua (policy as data, one ``may()``): who holds which rights is a
table built from the config (``Config.policy``); the feed, chat, rooms, ad-hoc commands and the node
audiences all ask it, so none of them can grow its own idea of who may see what.

A category is a (restriction, purpose) pair (``policy.nodes``). Actors:

* ``user``: a feed user (``feed.users``); rights ``read``/``write``, plus what anonymous readers get;
* ``anonymous``: nobody signed in to the feed (``feed.anonymous_restrictions``);
* ``jid``: a person in chat (``chat.readers``, by bare JID or ``*@domain``), who always sees public;
* ``room``: a chat room we post summaries to (``rooms[].post`` narrowed by ``allow``);
* ``member``: a member of the registry, whose bridge reads our nodes (``audiences``).

``operate`` (ad-hoc commands, approvals) is not about a category: it is held by the ``admins`` JIDs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from xmppbridge.iodef.markings import canonical_purpose
from xmppbridge.jids import bare_jid
from xmppbridge.policy.audiences import Audiences
from xmppbridge.policy.rights import Rights

PUBLIC = Rights.restrictions_of(("public",))
NONE = Rights()


class Action(StrEnum):
    READ = "read"  # see an entry, receive its item, subscribe to its node
    WRITE = "write"  # publish into the category (AtomPub)
    OPERATE = "operate"  # run operator commands


class Kind(StrEnum):
    USER = "user"
    ANONYMOUS = "anonymous"
    JID = "jid"
    ROOM = "room"
    MEMBER = "member"


@dataclass(frozen=True)
class Actor:
    kind: Kind
    name: str = ""  # user name, bare JID (lowercased), room JID or member name

    @classmethod
    def user(cls, name: str | None) -> Actor:
        return cls(Kind.ANONYMOUS) if name is None else cls(Kind.USER, name)

    @classmethod
    def jid(cls, jid: str) -> Actor:
        return cls(Kind.JID, bare_jid(jid))

    @classmethod
    def room(cls, room: str) -> Actor:
        return cls(Kind.ROOM, bare_jid(room))

    @classmethod
    def member(cls, name: str) -> Actor:
        return cls(Kind.MEMBER, name)


def _empty() -> Mapping[str, Rights]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Policy:
    readers: Mapping[str, Rights] = field(default_factory=_empty)  # feed user -> read
    writers: Mapping[str, Rights] = field(default_factory=_empty)  # feed user -> write
    anonymous: Rights = PUBLIC
    chat: Mapping[str, Rights] = field(default_factory=_empty)  # bare JID or *@domain -> read
    rooms: Mapping[str, Rights] = field(default_factory=_empty)  # room JID -> what is posted there
    admins: frozenset[str] = frozenset()
    audiences: Audiences = field(default_factory=Audiences)

    def rights(self, actor: Actor, action: Action = Action.READ) -> Rights:
        """Every category ``actor`` may ``action``: the form store filters take (``Rights.readable``)."""
        if action is Action.OPERATE:
            return NONE
        if action is Action.WRITE:
            return self.writers.get(actor.name, NONE) if actor.kind is Kind.USER else NONE
        match actor.kind:
            case Kind.ANONYMOUS:
                return self.anonymous
            case Kind.USER:
                return self.anonymous | self.readers.get(actor.name, NONE)
            case Kind.JID:
                domain = actor.name.rpartition("@")[2]
                return PUBLIC | self.chat.get(actor.name, NONE) | self.chat.get(f"*@{domain}", NONE)
            case Kind.ROOM:
                return self.rooms.get(actor.name, NONE)
            case Kind.MEMBER:
                return self.audiences.rights_of(actor.name)
        return NONE

    def may(self, actor: Actor, action: Action, category: tuple[str, str] | None = None) -> bool:
        if action is Action.OPERATE:
            return actor.kind is Kind.JID and actor.name in self.admins
        return category is not None and self.rights(actor, action).allows(*category)


class Decides(Protocol):
    """What the shells ask: a ``Policy``, or the ``LivePolicy`` a running bridge swaps on reload."""

    def rights(self, actor: Actor, action: Action = Action.READ) -> Rights: ...

    def may(self, actor: Actor, action: Action, category: tuple[str, str] | None = None) -> bool: ...


@dataclass
class LivePolicy:
    """The policy in force in a running bridge: SIGHUP replaces ``current`` (``Bridge.reload``), and the
    feed, chat and ad-hoc commands ask it at each request, so changed rights apply without a restart."""

    current: Policy

    def rights(self, actor: Actor, action: Action = Action.READ) -> Rights:
        return self.current.rights(actor, action)

    def may(self, actor: Actor, action: Action, category: tuple[str, str] | None = None) -> bool:
        return self.current.may(actor, action, category)


def category_of(restriction: str, purpose: str) -> tuple[str, str]:
    """The category an entry or item is filed under: its audience (the narrowest marking inside it) and
    its canonical purpose, the same key the nodes and the feed's collections use."""
    return restriction, canonical_purpose(purpose)
