"""Rights: sets of (restriction, purpose) category terms, the unit every access decision is made in.

draft-ietf-mile-rolie-02 §5.6 keys authorization on category scheme + term; every entry carries
exactly one restriction term and one purpose term (the canonical ones of ``policy.nodes``), so a right
is such a pair, and a reader sees an entry, a tombstone or a collection only through a matching pair.
The same pairs grant feed users, chat JIDs, rooms and member bridges (``policy.may``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS

ALL = "all"
MEMBER = "member:"


@dataclass(frozen=True)
class Rights:
    pairs: frozenset[tuple[str, str]] = frozenset()  # (restriction, purpose)

    @classmethod
    def parse(cls, grants: Iterable[str], members: Mapping[str, Rights] | None = None) -> Rights:
        """From config strings: ``all``, ``<restriction>`` (every purpose), ``<restriction>/<purpose>``,
        ``*/<purpose>``, and where ``members`` is given ``member:<name>``: what that member's audiences
        let it read (an analyst of cert-b reads our feed as cert-b's bridge reads our nodes). Raises
        ValueError naming the first bad one."""
        pairs: set[tuple[str, str]] = set()
        for grant in grants:
            if not isinstance(grant, str):
                raise ValueError(f"{grant!r} is not a string")
            if grant.startswith(MEMBER):
                name = grant.removeprefix(MEMBER)
                if members is None:
                    raise ValueError(f"{grant!r}: member: grants are for reading only")
                if name not in members:
                    raise ValueError(f"{grant!r}: {name} is not a member of the registry (members[].name)")
                pairs |= members[name].pairs
                continue
            if grant == ALL:
                pairs |= {(r, p) for r in RESTRICTIONS for p in PURPOSES}
                continue
            restriction, _, purpose = grant.partition("/")
            restrictions = RESTRICTIONS if restriction == "*" else (restriction,)
            purposes = PURPOSES if purpose in ("", "*") else (purpose,)
            if not set(restrictions) <= set(RESTRICTIONS) or not set(purposes) <= set(PURPOSES):
                raise ValueError(
                    f"{grant!r} is not 'all', a restriction ({', '.join(RESTRICTIONS)}) or"
                    f" restriction/purpose with purpose one of {', '.join(PURPOSES)}"
                )
            pairs |= {(r, p) for r in restrictions for p in purposes}
        return cls(frozenset(pairs))

    @classmethod
    def restrictions_of(cls, restrictions: Iterable[str]) -> Rights:
        return cls(frozenset((r, p) for r in restrictions for p in PURPOSES))

    def __or__(self, other: Rights) -> Rights:
        return Rights(self.pairs | other.pairs)

    def allows(self, restriction: str, purpose: str) -> bool:
        return (restriction, purpose) in self.pairs

    def purposes(self, restriction: str) -> frozenset[str] | None:
        """The purposes granted in ``restriction``; None when that is every purpose (no filter needed)."""
        granted = frozenset(p for r, p in self.pairs if r == restriction)
        return None if granted == frozenset(PURPOSES) else granted

    def restrictions(self) -> frozenset[str]:
        """Restrictions with at least one purpose granted: the collections one may see at all."""
        return frozenset(r for r, _ in self.pairs)

    def readable(self) -> dict[str, frozenset[str] | None]:
        """restriction -> purposes (None: all), the form the store's search filter takes."""
        return {r: self.purposes(r) for r in self.restrictions()}
