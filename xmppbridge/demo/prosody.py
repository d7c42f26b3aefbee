"""Start and stop a Prosody server for one XMPP domain on its own loopback address.

Used by ``make demo`` and by the integration tests, so both run exactly the configuration shipped in
``deploy/prosody/domain.cfg.lua.in``.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xmppbridge.demo.server import LocalServer, port_open

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "deploy" / "prosody" / "domain.cfg.lua.in"


class ProsodyError(RuntimeError):
    """Prosody could not be started; the message includes the tail of its error log."""


MISSING_UNBOUND = (
    "Prosody's resolver, libunbound's Lua binding, is not installed: without it Prosody ignores the "
    "`unbound` settings of deploy/prosody/domain.cfg.lua.in, cannot resolve the other local domains, and "
    "s2s fails with remote-server-not-found. Install it with `apt-get install lua-unbound` (`make demo` "
    "and `make test` do)."
)


@functools.cache
def has_lua_unbound(binary: str) -> bool:
    """Whether the Lua that runs ``binary`` (Prosody's launcher script) can load ``lunbound``.

    Prosody 0.12 only logs at debug level that it fell back to its own resolver, so we ask the same
    interpreter directly. Debian's prosody only recommends the package, so installs made with
    --no-install-recommends lack it.
    """
    with open(binary, "rb") as script:
        first = script.readline().decode(errors="replace")
    interpreter = first[2:].split() if first.startswith("#!") else ["lua"]
    try:
        probe = subprocess.run([*interpreter, "-e", 'require "lunbound"'], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@dataclass
class ProsodyServer(LocalServer):
    """Prosody with the shipped ``deploy/prosody/domain.cfg.lua.in``."""

    # False leaves the bridge out of the server's admins, the mistake `xmppbridge doctor` must catch.
    bridge_is_admin: bool = True

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        _write_tls_cert(self.workdir / "certs", self.domain)
        hosts = [f"{self.ip} {_names(self.domain)}"]
        hosts += [f"{ip} {_names(domain)}" for domain, ip in self.peers.items()]
        (self.workdir / "hosts").write_text("\n".join(hosts) + "\n")
        # Nothing listens on 127.0.0.1:53 here, so SRV lookups fail fast and Prosody falls back to
        # the hosts file (INTEROP.md §2).
        (self.workdir / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        config = Template(TEMPLATE.read_text()).substitute(
            run_as_root="run_as_root = true -- started as root (CI, containers)" if os.geteuid() == 0 else "",
            workdir=self.workdir,
            bridge_jid=self.bridge_jid,
            admins=f'"{self.bridge_jid}"' if self.bridge_is_admin else "",
            pubsub_jid=self.pubsub_jid,
            domain=self.domain,
            ip=self.ip,
            c2s_port=self.c2s_port,
            s2s_port=self.s2s_port,
            component_port=self.component_port,
            secret=self.secret,
            max_items=self.max_items,
        )
        path = self.workdir / "prosody.cfg.lua"
        path.write_text(config)
        return path

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("prosody")
        if binary is None:
            raise ProsodyError("prosody is not installed: apt-get install prosody lua-dbi-sqlite3 "
                               "lua-unbound")
        if not has_lua_unbound(binary):
            raise ProsodyError(MISSING_UNBOUND)
        command = self.command()
        log = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProsodyError(f"prosody for {self.domain} exited: {self._log_tail()}")
            if port_open(self.ip, self.component_port) and port_open(self.ip, self.s2s_port):
                return
            time.sleep(0.05)
        self.stop()
        raise ProsodyError(f"prosody for {self.domain} did not listen within {timeout} s: {self._log_tail()}")

    @property
    def log_path(self) -> Path:
        return self.workdir / "prosody.log"

    def command(self) -> list[str]:
        """The command line of this server (writes its configuration first)."""
        # -F keeps it in the foreground, so the process we hold is the server itself.
        return [shutil.which("prosody") or "prosody", "--config", str(self.write_config()), "-F"]

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stop at once, like a crash (for fault-injection tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _log_tail(self) -> str:
        texts = []
        for name in ("prosody.err", "stdout.log"):
            path = self.workdir / name
            if path.exists():
                texts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(texts) or "(no log)"


def _names(domain: str) -> str:
    # s2s sessions run between component hosts (pubsub.a.test <-> bridge.b.test), so every host
    # name must resolve, not only the domain.
    return f"{domain} pubsub.{domain} bridge.{domain}"



def _write_tls_cert(directory: Path, domain: str) -> None:
    """A self-signed certificate for the domain and its subdomains (s2s TLS; peers use dialback)."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / f"{domain}.key", directory / f"{domain}.crt"
    if key_path.exists() and cert_path.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
