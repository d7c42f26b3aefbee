"""``make demo``: federated members on loopback, sample incidents published, mirrored by the others.

By default two members: the samples are published at A and mirrored at B. With ``--members N`` (up to
16) every member publishes its own copy of the samples (IncidentIDs of its own domain), and each member
that follows it mirrors them (``--topology``: the full mesh, every member follows every other; hub and
spoke, where the hub, A or ``--hub``, relays what each spoke publishes to the other spokes; or a tree of
two hubs, A and B, each relaying what its spokes publish to its other spokes and to the other hub, and
what the other hub relays to its own spokes; or a ring of ``--hubs`` hubs, A, B, C, ..., each relaying
to its two neighbours).
``--servers prosody,ejabberd`` deals the server software round-robin.

READY is printed only once every member holds every sample it should, byte for byte as its publisher
signed it (a member stores an entry only after verifying its signature), or as the hub relayed it, with
the custody chain publisher then hub (then each hub it passed, with several hubs). Otherwise the demo
stops with a diagnosis. Once READY, a part that dies is reported with the command that starts it again,
and the rest keeps running.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from xmppbridge.config.settings import load_config
from xmppbridge.demo.accounts import Account, chat_server, create_accounts, write_credentials
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.ejabberd import EjabberdError
from xmppbridge.demo.mirrored import Missing, Pair, Published, missing_in, published_by, unreachable
from xmppbridge.demo.prosody import MISSING_UNBOUND, REPO_ROOT, ProsodyError, has_lua_unbound
from xmppbridge.demo.supervise import Part, Supervisor
from xmppbridge.demo.tampered import Tampered, refusal, slip_into_outbox
from xmppbridge.demo.topology import Shape, TopologyError, member_names, paths, server_kinds, ways
from xmppbridge.doctor import diagnose, format_text
from xmppbridge.policy.nodes import parse_node_name

SAMPLES = REPO_ROOT / "config" / "samples"
MIRROR_TIMEOUT = 60.0  # seconds for two members to mirror the samples; they arrive within a second or two
REFUSAL_TIMEOUT = 30.0  # seconds for B to refuse the tampered item, which A publishes after the samples
TAMPERED_SAMPLE = "01-phishing-public-v2.xml"
MAX_MEMBERS = 16  # one XMPP server and one bridge each, on a machine of 2 cores
# a and b keep the two-member demo's addresses; the third member on take 127.0.0.240-253, which no
# test suite uses (tests/integration.py and bench/lab.py pick theirs by XMPPBRIDGE_TEST_SLOT).
ADDRESSES = ("127.0.0.2", "127.0.0.3")
MORE_ADDRESSES = 240
LABELS = {"prosody": "Prosody", "ejabberd": "ejabberd"}
SHAPES = {"mesh": "full mesh", "hub": "hub and spoke", "tree": "tree of hubs", "ring": "ring of hubs"}


def demo_addresses(count: int) -> list[str]:
    """The default loopback addresses of ``count`` members."""
    return [*ADDRESSES, *(f"127.0.0.{MORE_ADDRESSES + i}" for i in range(count - 2))][:count]


MESH = Shape()


def run_demo(workdir: Path, *, members: int = 2, shape: Shape = MESH, servers: str = "prosody",
             addresses: Sequence[str] | None = None, feed_port: int = 8081) -> int:
    try:
        if members > MAX_MEMBERS:
            raise TopologyError(f"--members: at most {MAX_MEMBERS} on one machine (each member runs an "
                                f"XMPP server and a bridge), got {members}")
        names = member_names(members)
        follows = shape.of(names)
        kinds = server_kinds(servers, names)
        addresses = list(addresses or demo_addresses(members))
        if len(addresses) != members:
            raise TopologyError(f"--addresses: {members} members need {members} addresses, got "
                                f"{len(addresses)}")
    except TopologyError as exc:
        print(f"xmppbridge demo: {exc}", file=sys.stderr)
        return 2
    if (problem := _missing_software(set(kinds.values()))) is not None:
        print(problem, file=sys.stderr)
        return 2
    consortium = Consortium(workdir, dict(zip(names, addresses, strict=True)), feed_port_base=feed_port,
                            servers=kinds, topology=follows)
    supervisor: Supervisor | None = None
    stop_requested = False

    def request_stop(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        # Every member is trusted with everything the others publish. Anonymous readers see the public
        # collections; the demo analyst (var/demo/credentials) may read and write everything.
        consortium.write_files()
        print(f"configs, keys and data: {consortium.workdir}")
        consortium.start_servers()
        print(_servers_line(consortium, kinds))
        accounts = _accounts(consortium)
        write_credentials(consortium.workdir / "xmpp-credentials", accounts)
        consortium.start_bridges(timeout=120.0 + 10.0 * members)
        supervisor = _supervise(consortium)
        print(f"bridges: {_and([m.bridge_jid for m in consortium.members.values()])} connected")
        publishers = ["a"] if members == 2 else names
        items: dict[str, list[Published]] = {}
        for name, result in _publish(consortium, publishers).items():
            print(result.stdout, end="")
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr, end="")
                return 1
            items[name] = published_by(result.stdout)
        # The two-member demo also shows a refusal: B quarantines a copy altered after A signed it.
        tampered = slip_into_outbox(consortium["a"], SAMPLES / TAMPERED_SAMPLE) if members == 2 else None
        expected = _expected(consortium, items)
        missing = _wait_until_mirrored(consortium, expected, MIRROR_TIMEOUT * members / 2,
                                       lambda: stop_requested)
        if stop_requested:
            return 0
        if any(missing.values()):
            print(_diagnosis(consortium, expected, missing), file=sys.stderr, flush=True)
            return 1
        print(_mirrored_line(consortium, expected))
        if tampered is not None:
            print(_refusal_line(consortium, tampered))
        for member in consortium.members.values():
            print(f"{member.name.upper()}'s feeds: {member.feed_url}.well-known/rolie/servicedocument")
        a, b = consortium["a"], consortium["b"]
        print(f"operators: {a.metrics_url}healthz, {b.metrics_url}metrics (the operator listeners; the"
              " feeds' /healthz says only up)")
        print(f"sign in:   analyst and operator passwords (HTTP Basic) are in "
              f"{consortium.workdir / 'credentials'}")
        print(f"dashboard: {b.feed_url}dashboard, {a.feed_url}dashboard (sign in as operator)")
        print(f"chat:      accounts {', '.join(a.jid for a in accounts)} are in "
              f"{consortium.workdir / 'xmpp-credentials'}; message bridge.b.test 'help'")
        print(f"try:       {Path(sys.executable).parent / 'xmppbridge'} publish -c {a.config_path} FILE.xml")
        print("Ctrl-C stops everything.")
        print("READY " + " ".join(m.feed_url for m in consortium.members.values()), flush=True)
        while not stop_requested:
            for message in supervisor.poll():
                print(message, file=sys.stderr, flush=True)
            time.sleep(0.5)
        return 0
    except (ProsodyError, EjabberdError, RuntimeError) as exc:
        print(f"the demo could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping bridges and servers...", flush=True)
        if supervisor is not None:
            supervisor.stop_all()
        consortium.stop()
        print("stopped.")


def _missing_software(kinds: set[str]) -> str | None:
    """What to install first, if a server the demo needs is missing."""
    prosody = shutil.which("prosody")
    if "prosody" in kinds and (prosody is None or not has_lua_unbound(prosody)):
        return ("prosody is not installed: run `make demo` (it installs it) or apt-get install prosody "
                "lua-dbi-sqlite3 lua-unbound" if prosody is None else MISSING_UNBOUND)
    if "ejabberd" in kinds and shutil.which("ejabberdctl") is None:
        return "ejabberd is not installed: run `make demo` (it installs it) or apt-get install ejabberd"
    return None


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _servers_line(consortium: Consortium, kinds: Mapping[str, str]) -> str:
    """e.g. ``Prosody: a.test on 127.0.0.2, b.test on 127.0.0.3 (federated over s2s)``."""
    groups = []
    for kind, label in LABELS.items():
        hosted = [f"{m.domain} on {m.ip}" for m in consortium.members.values() if kinds[m.name] == kind]
        if hosted:
            groups.append(f"{label}: {', '.join(hosted)}")
    shape = f", {SHAPES[consortium.topology.name]}" if len(consortium.members) > 2 else ""
    if consortium.topology.hubs:
        shape += f" around {_and([consortium[hub].domain for hub in consortium.topology.hubs])}"
    return f"{'; '.join(groups)} (federated over s2s{shape})"


def _accounts(consortium: Consortium) -> list[Account]:
    """A chat account ``analyst`` on every member, and a stranger ``guest`` on b.test."""
    def make(name: str) -> list[Account]:
        users = ["analyst", "guest"] if name == "b" else ["analyst"]
        return create_accounts(chat_server(consortium[name].prosody), users)

    with ThreadPoolExecutor(4) as pool:
        return [account for made in pool.map(make, consortium.members) for account in made]


def samples_of(consortium: Consortium, name: str) -> list[Path]:
    """The samples as member ``name`` publishes them: A the shipped files; any other member a copy whose
    IncidentIDs are of its own domain (csirt.<name>.test), which its signing key speaks for."""
    shipped = sorted(SAMPLES.glob("*.xml"))
    if name == "a":
        return shipped
    directory = consortium.workdir / "samples" / name
    directory.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in shipped:
        copy = directory / path.name
        copy.write_bytes(path.read_bytes().replace(b"csirt.a.test", f"csirt.{name}.test".encode())
                         .replace(b">A-2024-", f">{name.upper()}-2024-".encode()))
        copies.append(copy)
    return copies


def _publish(consortium: Consortium,
             publishers: Sequence[str]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each publisher's samples, the publishers at once (each ``xmppbridge publish`` mostly waits)."""
    with ThreadPoolExecutor(4) as pool:
        runs = {name: pool.submit(consortium.publish, name, *samples_of(consortium, name))
                for name in publishers}
        return {name: run.result() for name, run in runs.items()}


def _expected(consortium: Consortium, items: Mapping[str, list[Published]]) -> dict[Pair, list[Published]]:
    """(receiver, publisher) -> what the receiver must hold of the publisher's items: those it follows
    (the topology) in categories the publisher's audiences let it read, and those a hub relays to it in
    categories the hub's audiences let it read, as the hub's copies (``topology.paths``)."""
    expected: dict[Pair, list[Published]] = {}
    audiences = {name: consortium.audiences(name) for name in consortium.members}
    for publisher, published in items.items():
        for item in published:
            category = parse_node_name("iodef", item.node)
            assert category is not None  # the bridge published it under its node prefix
            paths_of = paths(consortium.topology, audiences, publisher, *category)
            ways_of = ways(consortium.topology, audiences, publisher, *category)
            for receiver, via in sorted(paths_of.items()):
                held = item.relayed_by(via, consortium[via[-1]].pubsub_jid) if via else item
                # In a ring, the copies of the other ways it may hold instead (topology.ways).
                also = tuple(item if member == publisher else
                             item.relayed_by((member,), consortium[member].pubsub_jid)
                             for member in sorted(ways_of[receiver] - {held.relay or publisher}))
                expected.setdefault((receiver, publisher), []).append(replace(held, also=also))
    return expected


def _mirrored_line(consortium: Consortium, expected: Mapping[Pair, list[Published]]) -> str:
    members = len(consortium.members)
    if len(expected) == 1:
        [((receiver, publisher), items)] = expected.items()
        return (f"\n{receiver.upper()} mirrored all {len(items)} incidents published at {publisher.upper()}, "
                "signatures verified.")
    total = sum(map(len, expected.values()))
    hubs = consortium.topology.hubs
    if not hubs:
        return (f"\nEach of the {members} members mirrored what the other {members - 1} published ({total} "
                "incidents in all), signatures verified.")
    relayed = sum(bool(item.via) for items in expected.values() for item in items)
    chain = f"publisher then {hubs[0].upper()}" if len(hubs) == 1 else "publisher then each hub it passed"
    text = (f"\nEach of the {members} members mirrored what the other {members - 1} published ({total} "
            f"incidents in all, {relayed} of them relayed by {_and([h.upper() for h in hubs])} with the "
            f"custody chain {chain}), signatures verified.")
    for hub in hubs:
        # What the hub received and may not relay: private incidents (policy.relaying), which it keeps in
        # its quarantine as relay-refused, so that an operator sees they went no further.
        kept = sum(not consortium.topology.relays(hub, publisher, _restriction(item))
                   for (receiver, publisher), items in expected.items() if receiver == hub
                   for item in items if not item.via)
        if kept:
            text += (f"\n{hub.upper()} did not relay the {kept} private incidents it received: private is "
                     "never relayed; they are in its quarantine as relay-refused (xmppbridge quarantine list "
                     f"-c {consortium[hub].config_path}).")
    return text


def _restriction(item: Published) -> str:
    category = parse_node_name("iodef", item.node)
    assert category is not None  # the bridge published it under its node prefix
    return category[0]


def _refusal_line(consortium: Consortium, tampered: Tampered) -> str:
    b = consortium["b"]
    reason = refusal(b, tampered, REFUSAL_TIMEOUT)
    what = (f"a copy of {tampered.sample.name} altered after A signed it (item {tampered.item_id}), which the"
            " demo put in A's outbox")
    if reason is None:
        return f"B has not refused {what} within {REFUSAL_TIMEOUT:.0f} s: see {consortium.log_path('b')}"
    return f"B quarantined {what}: {reason} (xmppbridge quarantine list -c {b.config_path})"


def _supervise(consortium: Consortium) -> Supervisor:
    """Watch every member's server and bridge; ``--restart PART`` starts one of them again from another
    terminal."""
    parts, processes = [], {}
    for name, member in consortium.members.items():
        server = member.prosody
        parts.append(Part(f"server-{name}", server.command(), server.log_path,
                          [(server.ip, server.component_port), (server.ip, server.s2s_port)]))
        parts.append(Part(f"bridge-{name}", consortium.bridge_command(name), consortium.log_path(name),
                          [], member.metrics_url + "healthz"))
        assert server.process is not None and member.bridge is not None  # both started above
        processes |= {f"server-{name}": server.process, f"bridge-{name}": member.bridge}
    supervisor = Supervisor(consortium.workdir, parts)
    for name, process in processes.items():
        supervisor.track(name, process)
    return supervisor


def _wait_until_mirrored(consortium: Consortium, expected: Mapping[Pair, list[Published]], timeout: float,
                         stopping: Callable[[], bool]) -> dict[Pair, list[Missing]]:
    """What each receiver still lacks once everything arrived, the rest is held in quarantine or comes
    from a publisher the receiver cannot reach, or time is up."""
    stores = {name: member.store_path for name, member in consortium.members.items()}
    deadline = time.monotonic() + timeout
    while True:
        missing = missing_in(stores, expected, consortium.topology)
        # Quarantined items stay there until an operator releases them: no point in waiting. Neither
        # is there while a receiver's bridge finds the publisher's service unreachable (its peer health).
        waiting = [pair for pair, lacking in missing.items() if any(m.reason is None for m in lacking)]
        if not waiting or time.monotonic() > deadline or stopping():
            return missing
        # The service a receiver waits on: its publisher's, or for a relayed item the hub's.
        if all(unreachable(stores[receiver], lacking.item.service)
               for receiver, publisher in waiting for lacking in missing[(receiver, publisher)]
               if lacking.reason is None):
            return missing
        time.sleep(0.5)


def _diagnosis(consortium: Consortium, expected: Mapping[Pair, list[Published]],
               missing: Mapping[Pair, list[Missing]]) -> str:
    lines = []
    never_received = []
    for (receiver, publisher), lacking in missing.items():
        if not lacking:
            continue
        total = len(expected[(receiver, publisher)])
        lines.append(f"NOT READY: {receiver.upper()} holds {total - len(lacking)} of the {total} incidents "
                     f"published at {publisher.upper()}.")
        lines += [f"  {each.describe()}" for each in lacking]
        config = consortium[receiver].config_path
        if any(m.reason is not None for m in lacking):
            lines.append(f"{receiver.upper()} refused them; why, in full: "
                         f"xmppbridge quarantine list -c {config}")
        if any(m.reason is None for m in lacking) and receiver not in never_received:
            never_received.append(receiver)
    for receiver in never_received:
        config = consortium[receiver].config_path
        lines.append(f"{receiver.upper()} never received them. xmppbridge doctor -c {config} says:")
        lines += [f"  {line}" for line in _doctor(config).splitlines()]
    lines.append(f"logs: {', '.join(str(consortium.log_path(name)) for name in consortium.members)}, "
                 f"{consortium.workdir / 'prosody'}/*/prosody.log")
    return "\n".join(lines)


def _doctor(config_path: Path) -> str:
    """Doctor's report on a receiver, through its running bridge (the check that explains a federation
    failure)."""
    try:
        return format_text(asyncio.run(diagnose(load_config(config_path))))
    except Exception as exc:  # noqa: BLE001 - the diagnosis must not hide what it was diagnosing
        return f"(doctor could not run: {exc!r})"
