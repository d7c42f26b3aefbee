"""SQLite store: entries (+ versions), outbox, rejects. Use the ``Store`` facade; the table modules
(``entries``, ``outbox``, ``rejects``) hold the SQL, ``db`` the connection and schema, ``migrations`` the
upgrades. The feed's side: ``changelog`` (per-collection change sequence), ``feedviews`` (pages,
archives, revisions), ``searchindex`` and ``search``."""

from xmppbridge.store.entries import Entry, EntryVersion
from xmppbridge.store.facade import Store
from xmppbridge.store.outbox import OutboxItem
from xmppbridge.store.rejects import Reject

__all__ = ["Entry", "EntryVersion", "OutboxItem", "Reject", "Store"]
