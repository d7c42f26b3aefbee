"""The store's interfaces (``store.contracts``) and what the shells ask for: ``Store`` implements each
method of each one with the same parameters, so that a shell typed against an interface gets what it
was promised whichever backend is behind it. (The behaviour behind them is held to the same contract on
both backends by the store tests, run on SQLite and on PostgreSQL: tests/test_store*.py and the others
with the ``store_target`` fixture.)"""

from __future__ import annotations

import inspect

import pytest

from xmppbridge.chat.service import ChatReading
from xmppbridge.feed.http import FeedStore
from xmppbridge.ops.quarantine import Releasing
from xmppbridge.ops.status import Reported
from xmppbridge.paths.receive import Receiving
from xmppbridge.store import Store
from xmppbridge.store.contracts import CONCERNS, READS
from xmppbridge.xmpp.mirror import Mirroring

SHELLS = (Receiving, Releasing, Mirroring, FeedStore, ChatReading, Reported)


def members(protocol: type) -> list[str]:
    """The methods a protocol declares, its bases' included."""
    return sorted(name for klass in protocol.__mro__ if klass is not object
                  for name, value in vars(klass).items()
                  if callable(value) and not name.startswith("_"))


def shape(function: object) -> list[tuple[str, object, bool]]:
    """Parameters by name, kind and whether they have a default: what a caller may rely on."""
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty)
            for p in inspect.signature(function).parameters.values()]  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", CONCERNS + SHELLS, ids=lambda p: p.__name__)
def test_store_implements_every_method_with_the_same_parameters(protocol: type) -> None:
    declared = members(protocol)
    assert declared, f"{protocol.__name__} declares nothing"
    for name in declared:
        assert hasattr(Store, name), f"Store has no {name} of {protocol.__name__}"
        assert shape(getattr(Store, name)) == shape(getattr(protocol, name)), f"{protocol.__name__}.{name}"


def test_every_public_method_of_the_store_belongs_to_a_concern() -> None:
    """Nothing a shell calls is outside the interfaces, except the plumbing of tests and tools."""
    plumbing = {"close", "sql", "transaction", "backend", "conn", "path", "chat"}
    concerned = {name for protocol in CONCERNS for name in members(protocol)}
    public = {name for name in dir(Store) if not name.startswith("_")}
    assert public - concerned - plumbing == set()


def test_the_feed_is_typed_against_the_read_halves_only() -> None:
    """A feed process (serve-feed) writes nothing but the outbox, through the publisher: its store
    interface offers no write, so that a write added to a feed route does not type-check."""
    readable = {name for protocol in READS for name in members(protocol)}
    assert set(members(FeedStore)) <= readable
    writes = {name for protocol in CONCERNS for name in members(protocol)} - readable
    assert {"upsert_entry", "add_reject", "record_peer", "enqueue"} <= writes
