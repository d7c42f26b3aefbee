"""Who may read and write what: rights, credentials, the config's feed section, TLS with client
certificates, and an access matrix over every resource, in process (the federation tests repeat the
matrix against running bridges)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.test_feed_support import (
    ANALYST,
    MEMBER,
    MITIGATOR,
    OUTSIDER,
    TOKEN,
    TestUser,
    basic,
    client_for,
    iodef2,
    settings,
    store_document,
)
from xmppbridge.config.settings import Config, load_config
from xmppbridge.errors import ConfigError
from xmppbridge.feed import taxii
from xmppbridge.feed.access import User
from xmppbridge.feed.app import make_app
from xmppbridge.feed.auth import Authenticator, hash_password, hash_token, main, verify_password
from xmppbridge.feed.settings import TlsSettings
from xmppbridge.feed.tls import server_context
from xmppbridge.iodef.markings import PURPOSES, RESTRICTIONS
from xmppbridge.iodef.uuids import incident_uuid
from xmppbridge.policy.rights import Rights
from xmppbridge.signing.keys import generate_identity_files
from xmppbridge.store import Store

# -- rights --------------------------------------------------------------------------------------------


def test_rights_from_config_strings() -> None:
    every = Rights.parse(["all"])
    assert len(every.pairs) == len(RESTRICTIONS) * len(PURPOSES)
    partial = Rights.parse(["public", "need-to-know/mitigation", "*/watch"])
    assert partial.allows("public", "other") and partial.allows("need-to-know", "mitigation")
    assert partial.allows("private", "watch") and not partial.allows("private", "other")
    assert partial.purposes("public") is None  # every purpose: no filter needed
    assert partial.purposes("need-to-know") == {"mitigation", "watch"}
    assert partial.restrictions() == set(RESTRICTIONS)
    assert Rights.parse([]).readable() == {}
    for bad in (["amber"], ["public/phishing"], ["x/y/z"], [3]):
        with pytest.raises(ValueError):
            Rights.parse(bad)  # type: ignore[arg-type]


# -- credentials ---------------------------------------------------------------------------------------


def test_password_hashes_are_salted_and_verify() -> None:
    first, second = hash_password("secret", n=2**8), hash_password("secret", n=2**8)
    assert first != second and first.startswith("scrypt$256$8$1$")
    assert verify_password("secret", first) and not verify_password("Secret", first)
    assert hash_password("x").startswith("scrypt$16384$")  # the default cost


def test_authenticator_remembers_only_what_verified() -> None:
    auth = Authenticator([ANALYST.user()])
    assert auth.basic("analyst", "analyst-pw").name == "analyst"
    assert auth.basic("analyst", "analyst-pw").name == "analyst"  # from the cache
    assert auth.basic("analyst", "wrong") is None and auth.basic("nobody", "analyst-pw") is None
    assert all(b"analyst-pw" not in key for key in auth._verified)  # HMACs, not credentials


def test_hash_password_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("hunter2\n"))
    assert main(["hash-password", "--stdin"]) == 0
    printed = capsys.readouterr().out.strip()
    assert verify_password("hunter2", printed)
    assert main(["new-token"]) == 0
    token_line, hash_line = capsys.readouterr().out.splitlines()
    assert hash_token(token_line.split()[-1]) == hash_line.split()[-1]
    # and as documented, a module one runs
    result = subprocess.run(
        [sys.executable, "-m", "xmppbridge.feed.auth", "hash-password", "--stdin"],
        input="pw\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert verify_password("pw", result.stdout.strip())


# -- the config's feed section -------------------------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path) -> dict:
    generate_identity_files("test", tmp_path / "k.pem", tmp_path / "c.pem")
    return {
        "component": {"jid": "bridge.a.test", "secret": "s"},
        "pubsub": {"service": "pubsub.a.test"},
        "signing": {"key": "k.pem", "cert": "c.pem"},
        "store": {"path": "x.sqlite"},
        "feed": {"listen": "127.0.0.1:8080"},
    }


def load(tmp_path: Path, data: dict) -> Config:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_feed_section_with_users(tmp_path: Path, base: dict) -> None:
    base["feed"].update(
        page_size=20,
        archive_size=50,
        users={
            "analyst": {
                "password_hash": hash_password("pw", n=2**8),
                "read": ["all"],
                "write": ["need-to-know"],
            },
            "tool": {"token_hash": hash_token("t"), "read": ["public/watch"]},
        },
    )
    config = load(tmp_path, base)
    feed = config.feed
    assert (feed.listen_host, feed.listen_port, feed.base_url) == (
        "127.0.0.1",
        8080,
        "http://127.0.0.1:8080/",
    )
    assert config.feed_base_url == feed.base_url and config.feed_listen_port == 8080
    assert (feed.page_size, feed.archive_size) == (20, 50)
    analyst, tool = feed.users
    assert analyst.write.restrictions() == {"need-to-know"} and len(analyst.read.pairs) == 25
    assert tool.read.pairs == {("public", "watch")} and tool.write.pairs == frozenset()


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (
            lambda f: f.update(listen="0.0.0.0:8080", anonymous_restrictions=["public", "partner"]),
            "feed.anonymous_restrictions",
            "loopback",
        ),
        (lambda f: f.update(anonymous_restrictions=["amber"]), "feed.anonymous_restrictions", "unknown"),
        (
            lambda f: f.update(
                listen="0.0.0.0:8080", users={"a": {"token_hash": hash_token("t"), "read": ["all"]}}
            ),
            "feed.users",
            "in clear",
        ),
        (lambda f: f.update(users={"a": {"read": ["all"]}}), "feed.users.a", "password_hash"),
        (
            lambda f: f.update(users={"a": {"password_hash": "plain", "read": ["all"]}}),
            "feed.users.a.password_hash",
            "scrypt$",
        ),
        (
            lambda f: f.update(users={"a": {"token_hash": "abc", "read": ["all"]}}),
            "feed.users.a.token_hash",
            "sha256$",
        ),
        (
            lambda f: f.update(users={"a": {"token_hash": hash_token("t"), "read": ["amber"]}}),
            "feed.users.a.read",
            "'amber'",
        ),
        (
            lambda f: f.update(users={"a": {"client_cert_subject": "CN=a", "read": ["all"]}}),
            "feed.users.a.client_cert_subject",
            "client_ca",
        ),
        (lambda f: f.update(tls={"cert": "missing.pem", "key": "k.pem"}), "feed.tls.cert", "does not exist"),
        (
            lambda f: f.update(tls={"cert": "c.pem", "key": "k.pem"}, base_url="http://x/"),
            "feed.base_url",
            "https",
        ),
        (lambda f: f.update(page_size=1000), "feed.page_size", "max_page_size"),
        (lambda f: f.update(listen="127.0.0.1:99999"), "feed.listen", "host:port"),
    ],
)
def test_feed_section_errors(tmp_path: Path, base: dict, change, key: str, problem: str) -> None:
    change(base["feed"])
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, base)
    assert caught.value.key == key and problem in caught.value.problem, str(caught.value)


def test_tls_makes_https_the_default(tmp_path: Path, base: dict) -> None:
    base["feed"].update(
        listen="0.0.0.0:8443",
        tls={"cert": "c.pem", "key": "k.pem"},
        users={"a": {"token_hash": hash_token("t"), "read": ["all"]}},
    )
    feed = load(tmp_path, base).feed
    assert feed.base_url == "https://0.0.0.0:8443/" and feed.tls == TlsSettings(
        tmp_path / "c.pem", tmp_path / "k.pem"
    )


# -- authentication over HTTP --------------------------------------------------------------------------


@pytest.fixture
def store(store_target: str) -> Store:
    with Store(store_target) as opened:
        yield opened


async def test_credentials(store: Store) -> None:
    client = await client_for(store)
    try:
        ok = await client.get("/feeds/partner", headers=MEMBER.headers)
        assert ok.status == 200 and "private" in ok.headers["Cache-Control"]
        assert (
            await client.get("/feeds/partner", headers={"Authorization": f"Bearer {TOKEN}"})
        ).status == 200
        for headers in (
            basic("member", "wrong"),
            basic("nobody", "x"),
            {"Authorization": "Bearer nope"},
            {"Authorization": "Basic !!!"},
            {"Authorization": "Digest x"},
            {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        ):
            response = await client.get("/feeds/public", headers=headers)
            assert response.status == 401, headers  # wrong credentials are never read as anonymous
            assert response.headers.getall("WWW-Authenticate")[0].startswith("Basic realm=")
        anonymous = await client.get("/feeds/partner")
        assert (
            anonymous.status == 401 and "WWW-Authenticate" in anonymous.headers
        )  # a browser asks for a login
        assert (
            await client.get("/feeds/private", headers=MEMBER.headers)
        ).status == 404  # no such thing for him
        login = await client.get("/login", headers=MEMBER.headers, allow_redirects=False)
        assert login.status == 303 and login.headers["Location"].endswith(
            "/.well-known/rolie/servicedocument"
        )
        assert (await client.get("/login")).status == 401
    finally:
        await client.close()


# -- the access matrix ---------------------------------------------------------------------------------

Who = TestUser | None  # None: anonymous
VISIBLE = {
    None: {"public"},
    OUTSIDER: {"public"},  # signed in, no rights of its own: what anonymous readers see
    MEMBER: {"public", "partner", "need-to-know", "default"},
    ANALYST: set(RESTRICTIONS),
}


@pytest.fixture
async def matrix(store: Store) -> AsyncIterator[tuple[TestClient, dict[str, int]]]:
    ids = {}
    for restriction in RESTRICTIONS:
        ids[restriction] = store_document(
            store,
            iodef2(f"SECRET-{restriction}", restriction=restriction, description=f"words-{restriction}"),
        ).id
        store_document(
            store,
            iodef2(
                f"SECRET-{restriction}",
                restriction=restriction,  # a second revision
                description=f"words-{restriction} again",
            ),
        )
    client = await client_for(store, archive_size=1)
    yield client, ids
    await client.close()


def headers_of(who: Who) -> dict[str, str]:
    return {} if who is None else who.headers


@pytest.mark.parametrize("who", list(VISIBLE), ids=lambda w: "anonymous" if w is None else w.name)
async def test_access_matrix(matrix: tuple[TestClient, dict[str, int]], who: Who) -> None:
    client, ids = matrix
    headers = headers_of(who)
    bodies: list[str] = []

    async def get(path: str, expected: int) -> None:
        response = await client.get(path, headers=headers)
        assert response.status == expected, (path, response.status)
        bodies.append(await response.text())

    await get("/.well-known/rolie/servicedocument", 200)
    await get("/.well-known/rolie/categorydocument", 200)
    await get("/search?q=words", 200)
    await get("/search/stix.json?q=words", 200)
    await get("/search/indicators.csv?q=words", 200)
    await get("/misp/manifest.json", 200)
    await get("/misp/hashes.csv", 200)
    await get("/taxii2/api/collections/", 200)
    for restriction in RESTRICTIONS:
        entry = ids[restriction]
        # TAXII, every version of the incident (it has two): a collection one may not read is 404 to all
        collection = f"/taxii2/api/collections/{taxii.collection_id(restriction)}/"
        incident = f"incident--{incident_uuid('csirt.example.org', f'SECRET-{restriction}')}"
        taxii_paths = (collection, collection + "objects/?match[version]=all",
                       collection + "manifest/?match[version]=all", f"{collection}objects/{incident}/",
                       f"{collection}objects/{incident}/?match[version]=first",
                       f"{collection}objects/{incident}/versions/")
        for path in taxii_paths:
            await get(path, 200 if restriction in VISIBLE[who] else 404)
        if restriction in VISIBLE[who]:
            for path in (
                f"/feeds/{restriction}",
                f"/feeds/{restriction}/stix.json",
                f"/feeds/{restriction}/indicators.csv",
                f"/feeds/{restriction}/archive/1",
                f"/entries/{entry}",
                f"/entries/{entry}/iodef.xml",
                f"/entries/{entry}/revisions/1/iodef.xml",
                f"/entries/{entry}/history",
                f"/entries/{entry}/indicators.csv",
                f"/entries/{entry}/stix.json",
                f"/misp/{incident_uuid('csirt.example.org', f'SECRET-{restriction}')}.json",
                f"/search?incident=SECRET-{restriction}",
            ):
                await get(path, 200)
            assert f"SECRET-{restriction}" in bodies[-1]  # the search found it
        else:
            hidden_feed = 401 if who is None else 404
            await get(f"/feeds/{restriction}", hidden_feed)
            await get(f"/feeds/{restriction}/archive/1", hidden_feed)
            await get(f"/feeds/{restriction}/stix.json", hidden_feed)
            await get(f"/feeds/{restriction}/indicators.csv", hidden_feed)
            for path in (
                f"/entries/{entry}",
                f"/entries/{entry}/iodef.xml",
                f"/entries/{entry}/revisions/1/iodef.xml",
                f"/entries/{entry}/history",
                f"/entries/{entry}/indicators.csv",
                f"/entries/{entry}/stix.json",
                f"/misp/{incident_uuid('csirt.example.org', f'SECRET-{restriction}')}.json",
            ):
                await get(path, 404)  # exactly as if it did not exist
            found = await client.get(f"/search?incident=SECRET-{restriction}", headers=headers)
            assert found.status == 200 and "<entry" not in await found.text()  # its links echo the query
    text = "\n".join(bodies)
    for restriction in RESTRICTIONS:
        assert (f"SECRET-{restriction}" in text) == (restriction in VISIBLE[who]), restriction
        assert (f"feeds/{restriction}" in text) == (restriction in VISIBLE[who]), restriction


async def test_rights_per_purpose(store: Store) -> None:
    mitigation = store_document(store, iodef2("NTK-M", restriction="need-to-know", purpose="mitigation"))
    watch = store_document(store, iodef2("NTK-W", restriction="need-to-know", purpose="watch"))
    client = await client_for(store, archive_size=1)
    try:
        headers = MITIGATOR.headers
        feed = await (await client.get("/feeds/need-to-know", headers=headers)).text()
        assert "NTK-M" in feed and "NTK-W" not in feed
        archives = "".join(
            [
                await (await client.get(f"/feeds/need-to-know/archive/{n}", headers=headers)).text()
                for n in (1, 2)
            ]
        )
        assert "NTK-M" in archives and "NTK-W" not in archives
        assert (await client.get(f"/entries/{mitigation.id}", headers=headers)).status == 200
        assert (await client.get(f"/entries/{watch.id}", headers=headers)).status == 404
        found = await (await client.get("/search?q=botnet", headers=headers)).text()
        assert "NTK-M" in found and "NTK-W" not in found
        service = await (await client.get("/.well-known/rolie/servicedocument", headers=headers)).text()
        assert "feeds/need-to-know" in service and "feeds/partner" not in service
    finally:
        await client.close()


async def test_anonymous_beyond_public_only_where_configured(store: Store) -> None:
    entry = store_document(store, iodef2("NTK-1", restriction="need-to-know"))
    client = await client_for(store, anonymous_restrictions={"public", "need-to-know"})
    try:
        assert (await client.get(f"/entries/{entry.id}")).status == 200
        assert (await client.get("/feeds/need-to-know")).status == 200
        assert (await client.get("/feeds/private")).status == 401
    finally:
        await client.close()


# -- TLS and client certificates -----------------------------------------------------------------------


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, subject),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CSIRT A"),
        ]
    )
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, *objects: object) -> Path:
    pem = b""
    for obj in objects:
        if isinstance(obj, x509.Certificate):
            pem += obj.public_bytes(serialization.Encoding.PEM)
        else:
            pem += obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                serialization.NoEncryption(),
            )
    path.write_bytes(pem)
    return path


async def test_tls_with_client_certificates(store: Store, tmp_path: Path) -> None:
    store_document(store, iodef2("TLS-PARTNER", restriction="partner"))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test CA", ca_key, ca=True)
    server_key, client_key, stranger_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    server = _certificate("feed", server_key, (ca.subject, ca_key), ip="127.0.0.1")
    client_cert = _certificate("analyst-cert", client_key, (ca.subject, ca_key))
    stranger = _certificate("stranger", stranger_key, (ca.subject, ca_key))
    tls = TlsSettings(
        _write(tmp_path / "server.pem", server),
        _write(tmp_path / "server.key", server_key),
        _write(tmp_path / "ca.pem", ca),
    )
    user = User("by-cert", Rights.parse(["partner"]), cert_subject=client_cert.subject.rfc4514_string())
    app = make_app(store, settings(users=(user,), tls=tls))
    test_server = TestServer(app)
    await test_server.start_server(ssl=server_context(tls))
    url = f"https://127.0.0.1:{test_server.port}/feeds/partner"
    try:

        def context(cert: x509.Certificate | None, key: object = None) -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            if cert is not None:
                ctx.load_cert_chain(_write(tmp_path / "c.pem", cert), _write(tmp_path / "c.key", key))
            return ctx

        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=context(client_cert, client_key)) as response:
                assert response.status == 200 and "TLS-PARTNER" in await response.text()
            async with session.get(url, ssl=context(None)) as response:
                assert response.status == 401  # no certificate: anonymous
            async with session.get(url, ssl=context(stranger, stranger_key)) as response:
                assert response.status == 401  # verified, but mapped to no user: anonymous
        assert server_context(tls).minimum_version == ssl.TLSVersion.TLSv1_2  # RFC 8322 §5.3
    finally:
        await test_server.close()

