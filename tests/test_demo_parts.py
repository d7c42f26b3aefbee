"""The demo's supervision and its READY check, on plain processes and stores (no servers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xmppbridge.demo.mirrored import Missing, Published, published_by
from xmppbridge.demo.supervise import Part, Supervisor, load_layout, restart

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _part(tmp_path: Path, name: str, argv: list[str] = SLEEP) -> Part:
    return Part(name, argv, tmp_path / f"{name}.log", [])


def test_a_killed_part_is_reported_once_with_how_it_ended_and_the_command_to_start_it(tmp_path: Path) -> None:
    part = _part(tmp_path, "bridge-b")
    part.log.write_text("first\nlast words\n")
    supervisor = Supervisor(tmp_path, [part])
    child = subprocess.Popen(part.argv)
    supervisor.track("bridge-b", child)
    try:
        assert supervisor.poll() == []
        child.kill()
        child.wait()
        [message] = supervisor.poll()
        assert message.startswith(f"bridge-b (pid {child.pid}) was killed by signal 9 (SIGKILL). ")
        assert "last words" in message
        assert message.endswith(f"demo --workdir {tmp_path} --restart bridge-b")
        assert supervisor.poll() == []  # said once
    finally:
        supervisor.stop_all()


def test_a_part_started_again_from_outside_is_adopted_and_stopped_with_the_rest(tmp_path: Path) -> None:
    part = _part(tmp_path, "bridge-b")
    supervisor = Supervisor(tmp_path, [part])
    first = subprocess.Popen(part.argv)
    supervisor.track("bridge-b", first)
    first.terminate()
    first.wait()
    assert "was killed by signal 15 (SIGTERM)" in supervisor.poll()[0]

    assert load_layout(tmp_path) == {"bridge-b": part}
    assert restart(tmp_path, "bridge-b", timeout=10) == 0  # ready at once: no ports, no healthz
    pid = int((tmp_path / "pids" / "bridge-b").read_text())
    assert restart(tmp_path, "bridge-b") == 1  # running already
    assert supervisor.poll() == []  # adopted: running
    supervisor.stop_all()
    assert not Path(f"/proc/{pid}").exists() or " Z " in Path(f"/proc/{pid}/stat").read_text()


def test_restart_names_the_parts_when_asked_for_another(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    Supervisor(tmp_path, [_part(tmp_path, "server-a"), _part(tmp_path, "bridge-a")])
    assert restart(tmp_path, "bridge-z") == 2
    assert "its parts are server-a, bridge-a" in capsys.readouterr().err
    assert restart(tmp_path / "nowhere", "bridge-a") == 2
    assert "start one with `make demo`" in capsys.readouterr().err


def test_published_items_are_read_from_the_publish_output() -> None:
    output = ("x/01.xml: published to iodef/public/reporting on pubsub.a.test as item csirt.a.test/A-1\n"
              "x/02.xml: not published: timeout\n")
    item = Published("x/01.xml", "pubsub.a.test", "iodef/public/reporting", "csirt.a.test/A-1")
    assert published_by(output) == [item]
    assert Missing(item, None).describe() == ("iodef/public/reporting item csirt.a.test/A-1 (01.xml): "
                                              "not received")
    assert Missing(item, "untrusted-signer").describe().endswith(": quarantined as untrusted-signer")

