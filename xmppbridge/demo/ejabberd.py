"""Start and stop an ejabberd server for one XMPP domain on its own loopback address, like
``demo.prosody.ProsodyServer`` does for Prosody (same attributes and methods, so a consortium member can
run either).

ejabberd is Erlang: ``ejabberdctl`` started as root runs the VM as the ``ejabberd`` user, which must be
able to read its files. Test and demo work directories are often private to root (pytest's are), so the
server's files live in a directory of their own under the system temp dir, owned by ``ejabberd``,
linked from ``workdir`` and removed by ``stop``. There is no epmd (INTEROP.md §3).

Name resolution for s2s stays on loopback without touching ``/etc/hosts``: ejabberd 23.01 looks up SRV
records with Erlang's resolver (``inet_res``) and then resolves the target with the C library
(``net:getaddrinfo``), which ignores Erlang's ``inetrc`` host list. So a tiny DNS responder answers the
SRV queries for the consortium's host names with the peer's IP address as the target (which needs no
further lookup) and NXDOMAIN for anything else, and ``inetrc`` points ejabberd at it alone.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import ClassVar

from xmppbridge.demo.prosody import REPO_ROOT, _names, _write_tls_cert
from xmppbridge.demo.server import LocalServer, port_open

TEMPLATES = REPO_ROOT / "deploy" / "ejabberd"
USER = "ejabberd"
DIST_PORT = 5210  # Erlang distribution (ejabberdctl <-> server), on the member's own address
DNS_PORT = 5300  # the loopback DNS responder for ejabberd's SRV lookups, on the member's own address


class EjabberdError(RuntimeError):
    """ejabberd could not be started; the message includes the tail of its log."""


@dataclass
class EjabberdServer(LocalServer):
    home: Path | None = None  # where the server's files are (see the module docstring)
    dns: LoopbackDns | None = None

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.home is None:
            self.home = Path(tempfile.mkdtemp(prefix=f"xmppbridge-ejabberd-{self.domain}-"))
            link = self.workdir / "server"
            link.unlink(missing_ok=True)
            link.symlink_to(self.home)
        home = self.home
        for sub in ("db", "log"):
            (home / sub).mkdir(exist_ok=True)
        _write_tls_cert(self.workdir / "certs", self.domain)
        certs = self.workdir / "certs"
        (home / f"{self.domain}.pem").write_bytes((certs / f"{self.domain}.crt").read_bytes()
                                                  + (certs / f"{self.domain}.key").read_bytes())
        (home / f"{self.domain}.pem").chmod(0o600)
        values = self.template_values(home)
        for name, template in (("ejabberd.yml", self.config_template), ("ejabberdctl.cfg",) * 2):
            text = Template((TEMPLATES / f"{template}.in").read_text()).substitute(values)
            (home / name).write_text(text)
        (home / "inetrc").write_text(_inetrc(self.ip, {self.domain: self.ip, **self.peers}))
        if os.geteuid() == 0:
            account = pwd.getpwnam(USER)
            for path in [home, *home.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)
        return home / "ejabberd.yml"

    # The ejabberd.yml template under deploy/ejabberd (a cluster node has its own, demo.ejabberd_cluster).
    config_template: ClassVar[str] = "ejabberd.yml"

    def template_values(self, home: Path) -> dict[str, object]:
        """What the templates' placeholders are filled with."""
        return dict(workdir=home, domain=self.domain, ip=self.ip, c2s_port=self.c2s_port,
                    s2s_port=self.s2s_port, component_port=self.component_port, secret=self.secret,
                    bridge_jid=self.bridge_jid, pubsub_jid=self.pubsub_jid, max_items=self.max_items,
                    dist_port=DIST_PORT, node=f"ejabberd@{self.domain}", erl_options="")

    def _ctl(self, *args: str) -> list[str]:
        binary = shutil.which("ejabberdctl")
        if binary is None:
            raise EjabberdError("ejabberd is not installed: apt-get install ejabberd")
        assert self.home is not None
        home = self.home
        return [binary, "--config-dir", str(home), "--config", str(home / "ejabberd.yml"),
                "--ctl-config", str(home / "ejabberdctl.cfg"), "--spool", str(home / "db"),
                "--logs", str(home / "log"), *args]

    @property
    def log_path(self) -> Path:
        """The server's log, through the link to its files (``stop`` copies it beside the link)."""
        return self.workdir / "server" / "log" / "ejabberd.log"

    def command(self) -> list[str]:
        """The command line of this server (writes its configuration first), as Prosody's has."""
        self.write_config()
        return self._ctl("foreground")

    def start(self, timeout: float = 30.0) -> None:
        command = self.command()
        if self.dns is None:
            domains = {self.domain: self.ip, **self.peers}
            self.dns = LoopbackDns(self.ip, {name: ip for domain, ip in domains.items()
                                             for name in _names(domain).split()})
        log = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EjabberdError(f"ejabberd for {self.domain} exited: {self._log_tail()}")
            if all(port_open(self.ip, port) for port in (self.component_port, self.s2s_port, self.c2s_port)):
                return
            time.sleep(0.1)
        tail = self._log_tail()
        self.stop()
        raise EjabberdError(f"ejabberd for {self.domain} did not listen within {timeout} s: {tail}")

    def register(self, user: str, password: str) -> None:
        result = subprocess.run(self._ctl("register", user, self.domain, password), capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            raise EjabberdError(f"ejabberdctl register {user}@{self.domain} failed: "
                                f"{result.stdout}{result.stderr}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the Erlang VM (whose PID ejabberd writes down), then wait for ejabberdctl."""
        if self.process is not None and self.process.poll() is None:
            self._signal_vm(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_vm(signal.SIGKILL)
                self.process.kill()
                self.process.wait()
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        if self.home is not None:
            log = self.home / "log" / "ejabberd.log"
            if log.exists():  # keep the log for whoever looks at a failed run
                shutil.copyfile(log, self.workdir / "ejabberd.log")
            shutil.rmtree(self.home, ignore_errors=True)
            (self.workdir / "server").unlink(missing_ok=True)
            self.home = None

    def kill(self) -> None:
        """Stop at once, like a crash (for fault-injection tests); the files stay."""
        if self.process is not None and self.process.poll() is None:
            self._signal_vm(signal.SIGKILL)
            self.process.kill()
            self.process.wait()

    def _signal_vm(self, signum: int) -> None:
        assert self.home is not None
        pid_file = self.home / "ejabberd.pid"
        try:
            os.kill(int(pid_file.read_text().strip()), signum)
        except (OSError, ValueError):
            # No PID written yet: the VM is still starting; its parent is all we know.
            if self.process is not None:
                self.process.send_signal(signum)

    def _log_tail(self) -> str:
        texts = []
        for path in (self.home / "log" / "ejabberd.log" if self.home else None, self.workdir / "stdout.log"):
            if path is not None and path.exists():
                texts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(texts) or "(no log)"


def _inetrc(ip: str, hosts: dict[str, str]) -> str:
    """Erlang resolver config: host names from this list, DNS from our responder only (the system's
    resolv.conf is not read)."""
    lines = ['{lookup, [file]}.', '{resolv_conf, "/dev/null"}.',
             f"{{nameserver, {{{ip.replace('.', ',')}}}, {DNS_PORT}}}.",
             '{host, {127,0,0,1}, ["localhost"]}.']
    for domain, ip in hosts.items():
        names = ", ".join(f'"{name}"' for name in [*_names(domain).split(), f"rooms.{domain}"])
        lines.append(f"{{host, {{{ip.replace('.', ',')}}}, [{names}]}}.")
    return "\n".join(lines) + "\n"



class LoopbackDns:
    """Answers ``_xmpp-server._tcp.<host>`` SRV queries for known hosts with ``<ip>:5269`` (the target is
    the IP address itself) and NXDOMAIN for everything else, on UDP ``ip:DNS_PORT``."""

    def __init__(self, ip: str, hosts: dict[str, str], s2s_port: int = 5269) -> None:
        self.hosts, self.s2s_port = {name.lower(): address for name, address in hosts.items()}, s2s_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, DNS_PORT))
        self.sock.settimeout(0.2)  # closing a socket does not wake a thread blocked on it: poll a flag
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=f"dns-{ip}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            reply = self.answer(query)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def answer(self, query: bytes) -> bytes | None:
        labels, end = [], 12
        while end < len(query) and query[end]:
            labels.append(query[end + 1:end + 1 + query[end]].decode("ascii", "replace"))
            end += 1 + query[end]
        if len(query) < end + 5:
            return None
        question, (qtype,) = query[12:end + 5], struct.unpack("!H", query[end + 1:end + 3])
        name = ".".join(labels).lower()
        service, _, host = name.partition("._tcp.")
        target = self.hosts.get(host) if service == "_xmpp-server" else None
        if qtype != 33 or target is None:  # 33: SRV
            return query[:2] + b"\x81\x83" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question
        rdata = struct.pack("!HHH", 0, 0, self.s2s_port) + b"".join(
            bytes([len(part)]) + part.encode() for part in target.split(".")) + b"\x00"
        record = b"\xc0\x0c" + struct.pack("!HHIH", 33, 1, 60, len(rdata)) + rdata
        return query[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00" + question + record

    def stop(self) -> None:
        self._stopping.set()
        self.thread.join()
        self.sock.close()
