"""Who may see what in chat: the feed's access model (``feed.access.Rights``) keyed by JID.

The config lists, per feed grant (``need-to-know``, ``need-to-know/mitigation``, ``all``...), the JIDs
that hold it; a JID holds the union of its grants. Everyone, including a stranger, holds ``public``.
Rights are asked with ``Rights.allows(restriction, purpose)``, the same function the feed uses, so chat
cannot grow its own idea of who may see what.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xmppbridge.policy.nodes import canonical_purpose
from xmppbridge.policy.rights import Rights
from xmppbridge.store.entries import Entry

EVERYONE = Rights.restrictions_of(("public",))


@dataclass(frozen=True)
class ChatAccess:
    # bare JID ("analyst@a.test") or "*@domain" -> rights
    grants: Mapping[str, Rights]

    def rights(self, jid: str) -> Rights:
        bare = bare_jid(jid)
        domain = bare.rpartition("@")[2]
        rights = EVERYONE
        for key in (bare, f"*@{domain}"):
            if key in self.grants:
                rights = rights | self.grants[key]
        return rights

    def may_see(self, jid: str, entry: Entry) -> bool:
        return may_see(self.rights(jid), entry)


def may_see(rights: Rights, entry: Entry) -> bool:
    """An entry is filed under its audience (the narrowest marking inside it) and its canonical purpose:
    the same key the feed checks."""
    return rights.allows(entry.restriction, canonical_purpose(entry.incident.purpose))


def bare_jid(jid: str) -> str:
    return jid.partition("/")[0].lower()
