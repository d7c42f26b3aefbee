"""``make demo``: two federated members on loopback, sample incidents published at A, mirrored at B."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

from xmppbridge.demo.accounts import ProsodyAccounts, create_accounts, write_credentials
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.prosody import REPO_ROOT

SAMPLES = REPO_ROOT / "config" / "samples"


def run_demo(workdir: Path, *, addresses: tuple[str, str] = ("127.0.0.2", "127.0.0.3"),
             feed_port: int = 8081) -> int:
    if shutil.which("prosody") is None:
        print("prosody is not installed: run `make demo` (it installs it) or apt-get install prosody "
              "lua-dbi-sqlite3", file=sys.stderr)
        return 2
    consortium = Consortium(workdir, dict(zip("ab", addresses, strict=True)), feed_port_base=feed_port)
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
        print("bridges: bridge.a.test and bridge.b.test connected")
        samples = sorted(SAMPLES.glob("*.xml"))
        result = consortium.publish("a", *samples)
        print(result.stdout, end="")
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr, end="")
            return 1
        expected = result.stdout.count(": published to ")
        deadline = time.monotonic() + 60
        while consortium.health("b").get("entries", 0) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        mirrored = consortium.health("b").get("entries", 0)
        a, b = consortium["a"], consortium["b"]
        print(f"\nB mirrored {mirrored} of {expected} incidents published at A, signatures verified.")
        print(f"A's feeds: {a.feed_url}.well-known/rolie/servicedocument")
        print(f"B's feeds: {b.feed_url}.well-known/rolie/servicedocument")
        print(f"sign in:   analyst passwords (HTTP Basic) are in {consortium.workdir / 'credentials'}")
        print(f"chat:      accounts {', '.join(a.jid for a in accounts)} are in "
              f"{consortium.workdir / 'xmpp-credentials'}; message bridge.b.test 'help'")
        print(f"try:       {Path(sys.executable).parent / 'xmppbridge'} publish -c {a.config_path} FILE.xml")
        print("Ctrl-C stops everything.")
        print(f"READY {a.feed_url} {b.feed_url}", flush=True)
        while not stop_requested:
            for name in ("a", "b"):
                bridge = consortium[name].bridge
                if bridge is not None and bridge.poll() is not None:
                    print(f"bridge {name} stopped unexpectedly:\n{consortium.log_tail(name)}",
                          file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stopping bridges and servers...", flush=True)
        consortium.stop()
        print("stopped.")
