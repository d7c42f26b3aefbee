"""A hub's relay path per item in process, without XMPP, and what the once-only check adds (issue 17).

``bench_relay.py [N] [--stores sqlite,postgresql]``: hub h follows spoke a and hub b, and relays both. N
incidents (200) of a's go through the hub's mirror (``Mirror.on_item``: verify, store, ``Hub.relay``),
each four times, the rows below in order:

- **new, one way**: a's first revision, from a: checked against what h holds (``Hub.came_before``: one
  indexed read, nothing else holds it), relay-signed and queued, then published (outside the timing);
- **update, one way**: a's second revision, from a, as in a tree of hubs: one read again (our relayed
  copy does not count), relayed;
- **same, second way**: that revision relayed by hub b, as a ring of hubs brings it: mirrored, found to
  have come first (entries read, two documents parsed for the originator's digest), not relayed;
- **update, two ways**: a's third revision, from a, while b's copy holds the second: both entries read
  and parsed, and b's superseded ones (a lagging way's old revision is not relayed), relayed.

Each round runs with the check and without it (``came_before`` returning None, as before it existed), in
a fresh store each, taking turns; the figures are medians of three rounds: CPU ms per item, the check's
own share, and the ratio of the two. Without the check the second way is relayed again: that row's
"without" is what a ring cost before (a relay signature and a publish more per item and per way).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from xml.etree import ElementTree as ET

import yaml
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import option, positional, table  # noqa: E402
from bench.lab import postgres  # noqa: E402
from tests.hostile_corpus import iodef2  # noqa: E402
from xmppbridge.config.settings import Config, load_config  # noqa: E402
from xmppbridge.paths.custody import member_names  # noqa: E402
from xmppbridge.paths.hub import Hub  # noqa: E402
from xmppbridge.signing.keys import generate_identity_files, load_identity  # noqa: E402
from xmppbridge.signing.relay import relay_sign  # noqa: E402
from xmppbridge.signing.sign import sign_document  # noqa: E402
from xmppbridge.store import Store  # noqa: E402
from xmppbridge.xmpp.mirror import Mirror  # noqa: E402

N = 200
ROUNDS = 3
NODE = "iodef/partner/mitigation"
REVISIONS = ("Botnet C2 seen at 192.0.2.10", "Botnet C2 seen at 192.0.2.10, and now at .11",
             "Botnet C2 seen at 192.0.2.10, .11 and .12")


def hub_config(directory: Path) -> Config:
    """Hub h of spoke a and hub b, relaying partner items from both to everyone."""
    members = []
    for name in "hab":
        generate_identity_files(f"CSIRT {name}", directory / f"{name}.key", directory / f"{name}.crt",
                                domains=(f"{name}.test",))
        members.append({"name": name, "bridge": f"bridge.{name}.test", "pubsub": f"pubsub.{name}.test",
                        "domains": [f"{name}.test"], "certificate": f"{name}.crt"})
    path = directory / "h.yaml"
    path.write_text(yaml.safe_dump({
        "component": {"jid": "bridge.h.test", "secret": "s"}, "pubsub": {"service": "pubsub.h.test"},
        "signing": {"key": "h.key", "cert": "h.crt"}, "members": members, "audiences": {"partner": "all"},
        "relay": [{"from": ["a", "b"], "restrictions": ["partner"], "to": "all"}],
        "store": {"path": "h.sqlite"}, "feed": {"listen": "127.0.0.1:8080"}}))
    return load_config(path)


class Ways:
    """The documents of each row, signed once, outside the timing: (row, service, documents)."""

    def __init__(self, directory: Path, count: int) -> None:
        a, b = (load_identity(directory / f"{n}.key", directory / f"{n}.crt") for n in "ab")
        first, update, third = ([sign_document(etree.fromstring(iodef2(f"H-{i:05d}", restriction="partner",
                                                                      description=text)), a)
                                 for i in range(count)] for text in REVISIONS)
        self.rows = (("new, one way", "pubsub.a.test", first), ("update, one way", "pubsub.a.test", update),
                     ("same, second way", "pubsub.b.test", [relay_sign(payload, b) for payload in update]),
                     ("update, two ways", "pubsub.a.test", third))
        self.size = len(first[0])


@contextmanager
def timed_check(hub: Hub, enabled: bool, spent: list[float]) -> Iterator[None]:
    """``hub.came_before`` timed into ``spent[0]``, or replaced by one that finds nothing."""
    check = hub.came_before

    def timed(*args: object) -> object:
        start = time.process_time()
        try:
            return check(*args) if enabled else None  # type: ignore[arg-type]
        finally:
            spent[0] += time.process_time() - start
    hub.came_before = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        hub.came_before = check  # type: ignore[method-assign]


def one_round(config: Config, target: str, ways: Ways, enabled: bool) -> dict[str, tuple[float, float]]:
    """Per way: (CPU ms per item for the whole mirror call, of which the check), into a fresh store."""
    results = {}
    with Store(target) as store:
        hub = Hub(config, store, load_identity(config.signing_key, config.signing_cert))
        mirror = Mirror(config, store, config.trust, relay=hub.relay, retract_relayed=hub.retract,
                        member_of=member_names(config.registry))
        for way, service, payloads in ways.rows:
            spent = [0.0]
            with timed_check(hub, enabled, spent):
                start = time.process_time()
                for i, payload in enumerate(payloads):
                    with store.batch():
                        mirror.on_item(service, NODE, f"csirt.a.test/H-{i:05d}", ET.fromstring(payload))
                total = time.process_time() - start
            # h's relays published, as they are by the next item of the incident.
            store.mark_published(*(item.id for item in store.pending(limit=2 * len(payloads))),
                                 service="pubsub.h.test")
            per = 1000 / len(payloads)
            results[way] = (total * per, spent[0] * per)
    return results


def main() -> None:
    args = positional("--stores")
    count = int(args[0]) if args else N
    stores = option("--stores", "sqlite").split(",")
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config = hub_config(directory)
        ways = Ways(directory, count)
        cluster = stack.enter_context(postgres()) if "postgresql" in stores else None
        print(f"hub relay path in process: {count} documents of {ways.size} bytes per revision, median "
              f"of {ROUNDS} rounds, with the once-only check (Hub.came_before) and without it")
        rows = []
        for backend in stores:
            runs: dict[bool, list[dict[str, tuple[float, float]]]] = {True: [], False: []}
            for r in range(ROUNDS):
                # Taking turns, the order swapped every round: this VM's speed drifts within minutes.
                for enabled in ((True, False) if r % 2 == 0 else (False, True)):
                    name = f"relay{r}{int(enabled)}"
                    target = (str(directory / f"{name}.db") if cluster is None or backend == "sqlite"
                              else cluster.create_database(name))
                    runs[enabled].append(one_round(config, target, ways, enabled))
            for way, _, _ in ways.rows:
                with_check = median(runs[True], way, 0)
                check = median(runs[True], way, 1)
                without = median(runs[False], way, 0)
                rows.append([backend, way, f"{with_check:.2f}", f"{check:.2f}", f"{without:.2f}",
                             f"{with_check / without:.2f}"])
    print(table(rows, ["store", "way", "CPU ms/item", "of which check", "without check", "ratio"]))


def median(runs: list[dict[str, tuple[float, float]]], way: str, column: int) -> float:
    return statistics.median(run[way][column] for run in runs)


if __name__ == "__main__":
    main()
