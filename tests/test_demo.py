"""`make demo` as a user meets it: it starts, prints READY with both feed URLs, and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ATOM = "http://www.w3.org/2005/Atom"


def test_demo_runs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    slot = int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))  # as in conftest: several working copies
    port = 28181 + 20 * slot
    demo = subprocess.Popen(
        [sys.executable, "-m", "xmppbridge.cli", "demo", "--workdir", str(workdir),
         "--addresses", f"127.0.{slot}.32,127.0.{slot}.33", "--feed-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert demo.stdout is not None
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("READY "):
                break
        ready = [line for line in output if line.startswith("READY ")]
        assert ready == [f"READY http://127.0.0.1:{port}/ http://127.0.0.1:{port + 1}/\n"], "".join(output)

        for name in ("a.yaml", "b.yaml"):
            assert (workdir / name).exists()
        with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/healthz") as response:
            health = json.load(response)
        published = sum(": published to " in line for line in output)
        assert health["entries"] == published >= 7  # B mirrored everything A published
        assert health["rejects"] == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/feeds/public") as response:
            assert f'xmlns="{ATOM}"'.encode() in response.read()
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, "".join(output) + rest
    assert "stopped." in rest
    # Nothing the demo started is left behind.
    leftovers = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True).stdout
    assert leftovers == ""
