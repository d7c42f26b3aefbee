"""``make demo``: two federated members on loopback, sample incidents published at A, mirrored at B.

READY is printed only once B holds every sample A published, byte for byte as A signed it (B stores an
entry only after verifying its signature). Otherwise the demo stops with a diagnosis. Once READY, a part
that dies is reported with the command that starts it again, and the rest keeps running.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from xmppbridge.config import load_config
from xmppbridge.demo.accounts import ProsodyAccounts, create_accounts, write_credentials
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.mirrored import Missing, Published, missing_at, published_by, unreachable
from xmppbridge.demo.prosody import MISSING_UNBOUND, REPO_ROOT, ProsodyError, has_lua_unbound
from xmppbridge.demo.supervise import Part, Supervisor
from xmppbridge.doctor import diagnose, format_text

SAMPLES = REPO_ROOT / "config" / "samples"
MIRROR_TIMEOUT = 60.0  # seconds for B to mirror the samples; they arrive within a second or two


def run_demo(workdir: Path, *, addresses: tuple[str, str] = ("127.0.0.2", "127.0.0.3"),
             feed_port: int = 8081) -> int:
    prosody = shutil.which("prosody")
    if prosody is None or not has_lua_unbound(prosody):
        print("prosody is not installed: run `make demo` (it installs it) or apt-get install prosody "
              "lua-dbi-sqlite3 lua-unbound" if prosody is None else MISSING_UNBOUND, file=sys.stderr)
        return 2
    consortium = Consortium(workdir, dict(zip("ab", addresses, strict=True)), feed_port_base=feed_port)
    supervisor: Supervisor | None = None
    stop_requested = False

    def request_stop(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        # B is a member trusted with everything A publishes. Anonymous readers see the public collections;
        # the demo analyst (var/demo/credentials) may read and write everything.
        consortium.write_files()
        print(f"configs, keys and data: {consortium.workdir}")
        consortium.start_servers()
        print(f"Prosody: a.test on {addresses[0]}, b.test on {addresses[1]} (federated over s2s)")
        accounts = create_accounts(ProsodyAccounts(consortium["a"].prosody), ["analyst"])
        accounts += create_accounts(ProsodyAccounts(consortium["b"].prosody), ["analyst", "guest"])
        write_credentials(consortium.workdir / "xmpp-credentials", accounts)
        for name in ("a", "b"):
            consortium.start_bridge(name)
        supervisor = _supervise(consortium)
        print("bridges: bridge.a.test and bridge.b.test connected")
        result = consortium.publish("a", *sorted(SAMPLES.glob("*.xml")))
        print(result.stdout, end="")
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr, end="")
            return 1
        items = published_by(result.stdout)
        missing = _wait_until_mirrored(consortium, items, lambda: stop_requested)
        if stop_requested:
            return 0
        if missing:
            print(_diagnosis(consortium, items, missing), file=sys.stderr, flush=True)
            return 1
        a, b = consortium["a"], consortium["b"]
        print(f"\nB mirrored all {len(items)} incidents published at A, signatures verified.")
        print(f"A's feeds: {a.feed_url}.well-known/rolie/servicedocument")
        print(f"B's feeds: {b.feed_url}.well-known/rolie/servicedocument")
        print(f"operators: {a.metrics_url}healthz, {b.metrics_url}metrics (the operator listeners; the"
              " feeds' /healthz says only up)")
        print(f"sign in:   analyst passwords (HTTP Basic) are in {consortium.workdir / 'credentials'}")
        print(f"chat:      accounts {', '.join(a.jid for a in accounts)} are in "
              f"{consortium.workdir / 'xmpp-credentials'}; message bridge.b.test 'help'")
        print(f"try:       {Path(sys.executable).parent / 'xmppbridge'} publish -c {a.config_path} FILE.xml")
        print("Ctrl-C stops everything.")
        print(f"READY {a.feed_url} {b.feed_url}", flush=True)
        while not stop_requested:
            for message in supervisor.poll():
                print(message, file=sys.stderr, flush=True)
            time.sleep(0.5)
        return 0
    except (ProsodyError, RuntimeError) as exc:
        print(f"the demo could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping bridges and servers...", flush=True)
        if supervisor is not None:
            supervisor.stop_all()
        consortium.stop()
        print("stopped.")


def _supervise(consortium: Consortium) -> Supervisor:
    """Watch the four processes; ``--restart PART`` starts one of them again from another terminal."""
    parts, processes = [], {}
    for name, member in consortium.members.items():
        server = member.prosody
        parts.append(Part(f"server-{name}", server.command(), server.workdir / "prosody.log",
                          [(server.ip, server.component_port), (server.ip, server.s2s_port)]))
        parts.append(Part(f"bridge-{name}", consortium.bridge_command(name), consortium.log_path(name),
                          [], member.metrics_url + "healthz"))
        assert server.process is not None and member.bridge is not None  # both started above
        processes |= {f"server-{name}": server.process, f"bridge-{name}": member.bridge}
    supervisor = Supervisor(consortium.workdir, parts)
    for name, process in processes.items():
        supervisor.track(name, process)
    return supervisor


def _wait_until_mirrored(consortium: Consortium, items: list[Published],
                         stopping: Callable[[], bool]) -> list[Missing]:
    """What B still lacks once it holds everything, holds the rest in quarantine, cannot reach A, or
    time is up."""
    a, b = consortium["a"], consortium["b"]
    deadline = time.monotonic() + MIRROR_TIMEOUT
    while True:
        missing = missing_at(b.store_path, a.store_path, items)
        # Quarantined items stay there until an operator releases them: no point in waiting. Neither
        # is there while B's bridge finds A's service unreachable (B's peer health).
        if all(m.reason is not None for m in missing) or time.monotonic() > deadline:
            return missing
        if unreachable(b.store_path, a.pubsub_jid):
            return missing
        if stopping():
            return missing
        time.sleep(0.5)


def _diagnosis(consortium: Consortium, items: list[Published], missing: list[Missing]) -> str:
    b = consortium["b"]
    lines = [f"NOT READY: B holds {len(items) - len(missing)} of the {len(items)} incidents published at A."]
    lines += [f"  {each.describe()}" for each in missing]
    if any(m.reason is not None for m in missing):
        lines.append(f"B refused them; why, in full: xmppbridge quarantine list -c {b.config_path}")
    if any(m.reason is None for m in missing):
        lines.append(f"B never received them. xmppbridge doctor -c {b.config_path} says:")
        lines += [f"  {line}" for line in _doctor(b.config_path).splitlines()]
    lines.append(f"logs: {consortium.log_path('a')}, {consortium.log_path('b')}, "
                 f"{consortium.workdir / 'prosody'}/*/prosody.log")
    return "\n".join(lines)


def _doctor(config_path: Path) -> str:
    """Doctor's report on B, through B's running bridge (the check that explains a federation failure)."""
    try:
        return format_text(asyncio.run(diagnose(load_config(config_path))))
    except Exception as exc:  # noqa: BLE001 - the diagnosis must not hide what it was diagnosing
        return f"(doctor could not run: {exc!r})"
