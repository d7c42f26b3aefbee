"""Where a received item's CPU goes in the receive path's core, without XMPP (issue 16, issue 17).

``bench_receive.py [N] [DOCUMENT] [--stores sqlite,postgresql] [--relays 0] [--key ec|rsa]``: N signed
documents (400) go through
``paths.receive.receive_item`` one at a time, as the mirror hands them over (verify, classify, authorise,
store with its indexes, one commit each), into an SQLite store and into a PostgreSQL one
(``bench.lab.postgres``'s private durable cluster, started only when ``--stores`` names it). The
documents are ``bench.lab``'s small one (no indicators), or copies of the IODEF 2.0 file DOCUMENT with
their own IncidentID (``tests/data/iodef/iodef2-indicators.xml``: indicators, so the indicator and STIX
object indexes have rows to write). Prints, per backend, this process's CPU per item for the whole path
and for its two halves, ``check_item`` (signature, classification, source) and the store's upsert, and
how many times the payload's bytes are parsed per item (``iodef.parse.parse_untrusted``), median of
three rounds.

``--relays 0,1,2`` measures each count in turn: the documents as a spoke gets them relayed by that many
hubs (``signing.relay.relay_sign``, one more signature each, all verified on receipt). ``--key rsa``
signs with RSA-2048, as ``xmppbridge demo`` and the scale benchmark's members do, instead of P-256.

What it answers: whether parsing a received payload once instead of several times is worth doing (it
is not, while a parse is a few percent of the path), what share of a mesh bridge's CPU per delivery
(SCALING.md) the core takes at all, and what each relay on the way adds to a spoke's (SCALING.md, a
tree of two hubs).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import option, positional, table  # noqa: E402
from bench.lab import document, postgres  # noqa: E402
from tests.hostile_corpus import ec_identity  # noqa: E402
from xmppbridge.iodef import parse  # noqa: E402
from xmppbridge.paths import receive  # noqa: E402
from xmppbridge.signing import verify  # noqa: E402
from xmppbridge.signing.keys import SigningIdentity, generate_identity_files  # noqa: E402
from xmppbridge.signing.relay import relay_sign  # noqa: E402
from xmppbridge.signing.sign import sign_document  # noqa: E402
from xmppbridge.signing.trust import TrustStore  # noqa: E402
from xmppbridge.store import Store  # noqa: E402
from xmppbridge.store.items import ItemRef  # noqa: E402

N = 400
ROUNDS = 3
NODE = "iodef/need-to-know/mitigation"
MEMBERS = ("a", "h", "k")  # the originator, then the hubs in the order they relay


def identities(kind: str, directory: Path) -> list[SigningIdentity]:
    """One identity per member of ``MEMBERS``, each speaking for its own domain."""
    if kind == "ec":
        return [ec_identity(f"CSIRT {m.upper()}", domains=(f"{m}.test",)) for m in MEMBERS]
    return [generate_identity_files(f"CSIRT {m.upper()}", directory / f"{m}.key", directory / f"{m}.pem",
                                    domains=(f"{m}.test",)) for m in MEMBERS]


def relayed(items: list[bytes], hubs: list[SigningIdentity]) -> list[bytes]:
    """``items`` as the last of ``hubs`` publishes them: one relay signature per hub, in order."""
    for hub in hubs:
        items = [relay_sign(item, hub) for item in items]
    return items


def payloads(count: int, source: Path | None, originator: SigningIdentity) -> list[bytes]:
    """``count`` documents signed by ``originator``, each with its own IncidentID (so each is a new
    entry)."""
    original = None if source is None else source.read_bytes()
    signed = []
    for i in range(count):
        if original is None:
            root = etree.fromstring(document(f"R-{i:05d}", "need-to-know"))
        else:
            root = etree.fromstring(original)
            for incident_id in root.iter("{*}IncidentID"):
                incident_id.text = f"R-{i:05d}"
                incident_id.set("name", "csirt.a.test")
        signed.append(sign_document(root, originator))
    return signed


class Meter:
    """CPU seconds spent in ``check_item`` and in the upsert, and parses, counted by wrapping them."""

    def __init__(self) -> None:
        self.check = self.store = 0.0
        self.parses = 0

    @contextmanager
    def installed(self) -> Iterator[None]:
        check, upsert, untrusted = receive.check_item, Store.upsert_entry, parse.parse_untrusted
        receive.check_item = self._timed(check, "check")  # type: ignore[assignment]
        Store.upsert_entry = self._timed(upsert, "store")  # type: ignore[method-assign]

        def counted(*args: object, **kwargs: object) -> object:
            self.parses += 1
            return untrusted(*args, **kwargs)  # type: ignore[arg-type]
        # Both bindings: verify imported the function by name, StoredDocument calls the module's.
        parse.parse_untrusted = verify.parse_untrusted = counted  # type: ignore[assignment]
        try:
            yield
        finally:
            receive.check_item, Store.upsert_entry = check, upsert  # type: ignore[method-assign]
            parse.parse_untrusted = verify.parse_untrusted = untrusted

    def _timed(self, function: Callable[..., object], name: str) -> Callable[..., object]:
        def timed(*args: object, **kwargs: object) -> object:
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(self, name, getattr(self, name) + time.process_time() - start)
        return timed


def one_round(target: str, items: list[bytes], trust: TrustStore, service: str
              ) -> tuple[float, float, float, float]:
    """(total, check, store) CPU ms per item and parses per item, into a fresh store at ``target``."""
    meter = Meter()
    with Store(target) as store, meter.installed():
        start = time.process_time()
        for i, payload in enumerate(items):
            outcome = receive.receive_item(store, trust, ItemRef(service, NODE, f"r{i}"), payload,
                                           max_bytes=1_000_000)
            if not outcome.accepted:
                raise SystemExit(f"item {i} was refused: {outcome.status}: {outcome.message}")
        total = time.process_time() - start
    per = 1000 / len(items)
    return total * per, meter.check * per, meter.store * per, meter.parses / len(items)


def main() -> None:
    args = positional("--stores", "--relays", "--key")
    count = int(args[0]) if args else N
    source = Path(args[1]) if len(args) > 1 else None
    stores = option("--stores", "sqlite,postgresql").split(",")
    relay_counts = [int(n) for n in option("--relays", "0").split(",")]
    if any(not 0 <= n < len(MEMBERS) for n in relay_counts):
        sys.exit(f"--relays takes counts from 0 to {len(MEMBERS) - 1}; nothing was run")
    kind = option("--key", "ec")
    if kind not in ("ec", "rsa"):
        sys.exit(f"--key is ec or rsa, not {kind!r}; nothing was run")
    rows = []
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        signers = identities(kind, Path(tmp))
        trust = TrustStore.from_certificates([s.certificate for s in signers])
        signed = payloads(count, source, signers[0])
        print(f"receive path in process: {count} documents of {len(signed[0])} bytes as signed "
              f"({source or 'bench.lab document'}, {kind} keys), median of {ROUNDS} rounds")
        cluster = stack.enter_context(postgres()) if "postgresql" in stores else None
        for relays in relay_counts:
            items = relayed(signed, signers[1:relays + 1])
            service = f"pubsub.{MEMBERS[relays]}.test"  # the last hub's, or the originator's
            for backend in stores:
                results = []
                for r in range(ROUNDS):
                    target = (str(Path(tmp) / f"{relays}-{r}.db") if cluster is None or backend == "sqlite"
                              else cluster.create_database(f"receive{relays}x{r}"))
                    results.append(one_round(target, items, trust, service))
                columns = zip(*results, strict=True)
                total, check, stored, parses = (statistics.median(column) for column in columns)
                rows.append([str(relays), str(len(items[0])), backend, f"{total:.2f}", f"{check:.2f}",
                             f"{stored:.2f}", f"{total - check - stored:.2f}", f"{parses:.0f}"])
    print(table(rows, ["relays", "bytes", "store", "CPU ms/item", "check_item", "upsert", "rest",
                       "parses/item"]))


if __name__ == "__main__":
    main()
