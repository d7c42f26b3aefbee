"""A private PostgreSQL cluster for tests: initdb in a temporary directory, as an unprivileged user,
listening on one loopback port only, stopped and removed afterwards with no process left behind.

Debian's ``postgresql`` package (installed by the Makefile) provides the binaries; nothing of the
machine's own clusters is used. Run as root (CI), the cluster belongs to the ``postgres`` user the
package creates, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "xmppbridge"  # the cluster's superuser; trust authentication, on loopback only
MACHINES_HBA = "host all all 10.250.0.0/16 trust"  # tests/netns.NET


@dataclass(frozen=True)
class Cluster:
    directory: Path
    host: str
    port: int

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{USER}@{self.host}:{self.port}/{name}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database (a copy of ``template`` when given, which nobody may be connected to); its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def port_for_slot(base: int = 15432) -> int:
    """A port per XMPPBRIDGE_TEST_SLOT, so that several working copies' tests do not meet."""
    return base + 10 * int(os.environ.get("XMPPBRIDGE_TEST_SLOT", "0"))


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


@contextmanager
def private_cluster(port: int | None = None, host: str = "127.0.0.1", *, keep: Path | None = None,
                    settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    """``keep``: the cluster's directory, created on first use and left in place (stopped) afterwards,
    so that a benchmark can reuse a large database; by default a temporary directory, removed.
    ``settings``: server settings over the tests' own (``fsync=off``: the tests need no durability;
    a benchmark that compares with SQLite's durable commits passes ``{"fsync": "on"}``)."""
    if not (BIN / "initdb").exists():
        raise RuntimeError(f"{BIN}/initdb is missing: run `make test`, which installs Debian's postgresql")
    port = port or port_for_slot()
    if _port_open(host, port):
        raise RuntimeError(f"{host}:{port} is taken: another cluster or test run is using it")
    # Not under pytest's tmp_path: its parents are private to root, and the cluster's owner must reach it.
    directory = keep or Path(tempfile.mkdtemp(prefix="xmppbridge-pg-"))
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(directory, host, port)
    try:
        if not (data / "PG_VERSION").exists():  # a kept cluster is made once
            subprocess.run(_as_owner([str(BIN / "initdb"), "-D", str(data), "-U", USER, "-A", "trust",
                                      "--no-sync", "-E", "UTF8"]), check=True, capture_output=True,
                           timeout=120)
        # The "machines" of tests/netns.py reach this loopback address over their veth links, from their
        # own addresses: trusted as loopback is (nothing else can send to a loopback address).
        hba = data / "pg_hba.conf"
        if MACHINES_HBA not in hba.read_text():
            with hba.open("a") as lines:
                lines.write(MACHINES_HBA + "\n")
        options = f"-c listen_addresses={host} -p {port} -k {directory} " + " ".join(
            f"-c {name}={value}" for name, value in {"fsync": "off", **(settings or {})}.items())
        subprocess.run(_as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                  str(directory / "log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=90)
        yield cluster
    finally:
        if (data / "postmaster.pid").exists():
            # A kept cluster is stopped with a checkpoint, so that its next start need not replay the WAL.
            mode = "immediate" if keep is None else "fast"
            subprocess.run(_as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-m", mode, "-w",
                                      "-t", "120", "stop"]), capture_output=True, timeout=180)
        deadline = time.monotonic() + 10
        while _port_open(host, port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)
