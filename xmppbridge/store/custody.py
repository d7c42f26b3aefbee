"""A custody chain (``items.Custodian``) <-> the JSON text the ``entries`` and ``outbox`` rows keep.

NULL (empty chain) for a document that came straight from its originator, which is most of them: the
signer columns say all there is, and the rows stay as small as before.
"""

from __future__ import annotations

import json

from xmppbridge.store.db import from_text, to_text
from xmppbridge.store.items import Custodian


def to_json(chain: tuple[Custodian, ...]) -> str | None:
    if not chain:
        return None
    return json.dumps([{"role": c.role, "subject": c.subject, "fingerprint": c.fingerprint,
                        "at": to_text(c.at), "member": c.member} for c in chain])


def from_json(text: str | None) -> tuple[Custodian, ...]:
    if not text:
        return ()
    return tuple(Custodian(hop["role"], hop["subject"], hop["fingerprint"], from_text(hop["at"]),
                           hop.get("member", "")) for hop in json.loads(text))
