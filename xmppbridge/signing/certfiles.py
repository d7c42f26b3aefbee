"""Read certificates and CRLs from the files an operator names in the ``trust:`` section.

Errors are ``ConfigError``s naming the file and the config key, because a trust file that cannot be used
must stop the bridge at start-up rather than make it reject (or worse, accept) items later.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from xmppbridge.errors import ConfigError

CERT_SUFFIXES = (".pem", ".crt")


def certificate_files(path: Path, key: str) -> list[Path]:
    """``path`` itself, or the ``*.pem``/``*.crt`` files of a directory (not recursive), sorted."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in CERT_SUFFIXES)
    if path.is_file():
        return [path]
    raise ConfigError(str(path), key, "no such file or directory")


def load_certificates(file: Path, key: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file (a bundle may hold several)."""
    try:
        return x509.load_pem_x509_certificates(file.read_bytes())
    except OSError as exc:
        raise ConfigError(str(file), key, f"cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(file), key, f"no usable PEM certificate: {exc}") from None


def load_crl(file: Path, key: str) -> x509.CertificateRevocationList:
    """A CRL in PEM or DER form."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(str(file), key, f"cannot read: {exc.strerror}") from None
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise ConfigError(str(file), key, f"not a PEM or DER certificate revocation list: {exc}") from None
