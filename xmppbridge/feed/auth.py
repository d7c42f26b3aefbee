"""Credentials: salted password hashes (scrypt), hashed bearer tokens, and resolving them to users.

Configs hold only hashes. Make them with::

    python -m xmppbridge.feed.auth hash-password        # asks twice, prints scrypt$...
    python -m xmppbridge.feed.auth new-token            # prints a new token and its sha256$... hash

scrypt makes every guess cost ~50 ms and 16 MiB; a verified password is then remembered (keyed by a
hash of what the client sent) so that a browser sending Basic credentials with every request does not
pay that price each time. How many guesses get that far is ``feed.login``'s business (backoff).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys
from collections.abc import Iterable

from xmppbridge.feed.access import User

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_CACHE_SIZE = 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64), with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password_hash(encoded: str) -> None:
    """Raise ValueError unless ``encoded`` is something ``hash_password`` could have produced."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isdigit() for p in parts[1:4]):
        raise ValueError("must be scrypt$N$r$p$salt$hash, as printed by"
                         " `python -m xmppbridge.feed.auth hash-password`")
    base64.b64decode(parts[4], validate=True)
    base64.b64decode(parts[5], validate=True)


def verify_password(password: str, encoded: str) -> bool:
    _, n, r, p, salt, expected = encoded.split("$")
    digest = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                            p=int(p), maxmem=_SCRYPT_MAXMEM, dklen=32)
    return hmac.compare_digest(digest, base64.b64decode(expected))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are 256 random bits, so one SHA-256 is enough to keep the config useless to a thief."""
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_token_hash(encoded: str) -> None:
    prefix, _, hexdigest = encoded.partition("$")
    if prefix != "sha256" or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        raise ValueError("must be sha256$<64 hex digits>, as printed by"
                         " `python -m xmppbridge.feed.auth new-token`")


class Authenticator:
    """Finds the user for Basic credentials, a bearer token or a client certificate subject."""

    def __init__(self, users: Iterable[User]) -> None:
        self.users = {user.name: user for user in users}
        self._tokens = {user.token_hash: user for user in self.users.values() if user.token_hash}
        self._subjects = {user.cert_subject: user for user in self.users.values() if user.cert_subject}
        self._verified: dict[bytes, User] = {}
        self._key = secrets.token_bytes(32)  # the cache holds HMACs of credentials, never the credentials

    def has_password(self, name: str) -> bool:
        """Whether ``name`` could log in with a password at all (no scrypt is spent on other names)."""
        user = self.users.get(name)
        return user is not None and user.password_hash is not None

    def remembered(self, name: str, password: str) -> User | None:
        """The user, if these exact credentials were verified before: fast, fine on the event loop."""
        user = self.users.get(name)
        remembered = self._verified.get(self._cache_key(name, password))
        return user if user is not None and remembered is user else None

    def basic(self, name: str, password: str) -> User | None:
        """Slow on a miss (scrypt); call it off the event loop."""
        key = self._cache_key(name, password)
        user = self.users.get(name)
        if user is None or user.password_hash is None:
            return None
        if self._verified.get(key) is user:
            return user
        if not verify_password(password, user.password_hash):
            return None
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[key] = user
        return user

    def _cache_key(self, name: str, password: str) -> bytes:
        return hmac.new(self._key, f"{name}\x00{password}".encode(), hashlib.sha256).digest()

    def bearer(self, token: str) -> User | None:
        """One SHA-256: fast, so tokens need no hashing bound (failures still count in the throttle)."""
        candidate = hash_token(token)
        for stored, user in self._tokens.items():
            if hmac.compare_digest(stored, candidate):
                return user
        return None

    def certificate(self, subject: str) -> User | None:
        return self._subjects.get(subject)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xmppbridge.feed.auth",
                                     description="make credential hashes for the feed's users")
    commands = parser.add_subparsers(dest="command", required=True)
    hashing = commands.add_parser("hash-password", help="print the scrypt hash of a password")
    hashing.add_argument("--stdin", action="store_true", help="read the password from standard input")
    commands.add_parser("new-token", help="print a new bearer token and the hash to put in the config")
    args = parser.parse_args(argv)
    if args.command == "new-token":
        token = new_token()
        print(f"token:      {token}\ntoken_hash: {hash_token(token)}")
        return 0
    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("empty password refused", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
