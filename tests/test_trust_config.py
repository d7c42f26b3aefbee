"""The ``trust:`` section and per-subscription trust rules, as an operator writes them."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest
import yaml

from tests.pki import DAY, NOW, issue, make_ca, make_crl, pem
from xmppbridge.config.settings import load_config
from xmppbridge.errors import ConfigError
from xmppbridge.signing.keys import generate_identity_files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys, certificates and CRLs, made once (RSA CAs take a while)."""
    directory = tmp_path_factory.mktemp("trust-files")
    generate_identity_files("us", directory / "k.pem", directory / "c.pem", kind="ec")
    (directory / "trust").mkdir()
    generate_identity_files("old b", directory / "b-old.key", directory / "b-old.crt", kind="ec",
                            domains=("b.test",))
    generate_identity_files("new b", directory / "b.key", directory / "trust" / "b.crt", kind="ec")
    ca = make_ca()
    member = issue(ca, "CSIRT C")
    (directory / "ca.pem").write_bytes(pem(ca.certificate))
    (directory / "member.pem").write_bytes(pem(member.certificate))
    (directory / "ca.crl").write_bytes(pem(make_crl(ca, [member.certificate])))
    (directory / "stale.crl").write_bytes(pem(make_crl(ca, [], last_update=NOW - 30 * DAY)))
    (directory / "other.crl").write_bytes(pem(make_crl(make_ca("Unrelated CA"), [])))
    (directory / "forged.crl").write_bytes(pem(make_crl(make_ca(), [])))  # the CA's name, another key
    return directory


@pytest.fixture
def base(tmp_path: Path, files: Path) -> dict:
    shutil.copytree(files, tmp_path, dirs_exist_ok=True)
    return {
        "component": {"jid": "bridge.a.test", "secret": "s"},
        "pubsub": {"service": "pubsub.a.test"},
        "signing": {"key": "k.pem", "cert": "c.pem"},
        "trust": {
            "anchors": ["trust", {"cert": "b-old.crt", "until": datetime.date(2027, 2, 1)}],
            "ca": ["ca.pem"],
            "crl": ["ca.crl"],
            "domains": {"CN=new b": ["b.test"], "CN=CSIRT C, O=Test Consortium": ["c.test", "c.example"]},
        },
        "subscriptions": [
            {"service": "pubsub.b.test", "nodes": "all", "signers": ["CN=new b", "CN=old b"]},
            {"service": "pubsub.c.test", "nodes": "all", "allow_domains": "*"},
            {"service": "pubsub.d.test", "nodes": "all"},
        ],
        "store": {"path": "x.sqlite"},
    }


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_whole_trust_section_loads(tmp_path: Path, base: dict) -> None:
    config = load_config(write(tmp_path, base))
    trust = config.trust
    assert len(trust) == 2 and config.trust_anchors == (tmp_path / "trust", tmp_path / "b-old.crt")
    [(old_fp, until)] = trust.retire_at.items()
    assert trust.certificates[old_fp].subject.rfc4514_string() == "CN=old b"
    assert until == datetime.datetime(2027, 2, 1, tzinfo=datetime.UTC)
    [authority] = trust.authorities
    assert authority.subject.rfc4514_string() == "CN=Consortium Root CA,O=Test Consortium"
    assert len(trust.crls) == 1
    assert {ref.text: domains for ref, domains in trust.domains} == {
        "CN=new b": ("b.test",), "CN=CSIRT C, O=Test Consortium": ("c.test", "c.example")}
    assert [ref.text for ref in trust.sources["pubsub.b.test"].signers] == ["CN=new b", "CN=old b"]
    assert trust.sources["pubsub.c.test"].allow_domains == ("*",)
    assert trust.sources["pubsub.c.test"].signers is None
    assert "pubsub.d.test" not in trust.sources


def test_a_signer_rule_applies_however_the_service_is_spelled(tmp_path: Path, base: dict) -> None:
    base["subscriptions"][0]["service"] = "PubSub.B.Test"
    trust = load_config(write(tmp_path, base)).trust
    # Keyed as stanzas' senders are: otherwise items from pubsub.b.test would meet no signer rule.
    assert [ref.text for ref in trust.sources["pubsub.b.test"].signers] == ["CN=new b", "CN=old b"]
    base["subscriptions"].append({"service": "pubsub.b.test", "allow_domains": ["x.test"]})
    with pytest.raises(ConfigError, match="given by another subscription"):
        load_config(write(tmp_path, base))


def test_a_ca_alone_is_enough_to_subscribe(tmp_path: Path, base: dict) -> None:
    del base["trust"]["anchors"]
    assert load_config(write(tmp_path, base)).trust.authorities


def test_a_stale_crl_is_only_a_warning_at_start(tmp_path: Path, base: dict,
                                                caplog: pytest.LogCaptureFixture) -> None:
    base["trust"]["crl"] = ["stale.crl"]
    load_config(write(tmp_path, base))
    assert "stale" in caplog.text


@pytest.mark.parametrize(("change", "key", "problem"), [
    (lambda c: c.update(trust={}), "trust.anchors", "at least one trust anchor, a consortium CA"),
    (lambda c: c["trust"]["anchors"].append({"cert": "b-old.crt", "until": "soon"}), "trust.anchors[2].until",
     "date or time"),
    (lambda c: c["trust"]["anchors"].append({"file": "b-old.crt"}), "trust.anchors[2]", "mapping {cert"),
    (lambda c: c["trust"]["anchors"].append(7), "trust.anchors[2]", "path or a mapping"),
    (lambda c: c["trust"]["anchors"].append("missing.pem"), "trust.anchors[2]", "does not exist"),
    (lambda c: c["trust"].update(ca=["member.pem"]), "trust.ca[0]", "not a CA certificate"),
    (lambda c: c["trust"].update(ca="ca.pem"), "trust.ca", "must be a list"),
    (lambda c: c["trust"].pop("ca"), "trust.crl", "configure it in trust.ca"),
    (lambda c: c["trust"].update(crl=["c.pem"]), "trust.crl[0]", "not a PEM or DER"),
    (lambda c: c["trust"].update(domains={"CN=x": ["not a domain!"]}), "trust.domains.CN=x", "not a domain"),
    (lambda c: c["trust"].update(domains={"CN=x": "*"}), "trust.domains.CN=x", "not a domain"),
    (lambda c: c["trust"].update(domains={"someone": ["b.test"]}), "trust.domains.someone",
     "neither a SHA-256 fingerprint"),
    (lambda c: c["subscriptions"][0].update(signers=[]), "subscriptions[0].signers", "non-empty list"),
    (lambda c: c["subscriptions"][0].update(signers=["bob"]), "subscriptions[0].signers[0]", "subject DN"),
    (lambda c: c["subscriptions"][1].update(allow_domains=[]), "subscriptions[1].allow_domains", "non-empty"),
    (lambda c: c["subscriptions"].append({"service": "pubsub.b.test", "allow_domains": ["x.test"]}),
     "subscriptions[3]", "given by another subscription"),
])
def test_errors_name_file_key_and_problem(tmp_path: Path, base: dict, change, key: str, problem: str) -> None:
    change(base)
    path = write(tmp_path, base)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    # The config file, or the trust file the key names when that file is the problem.
    assert message.startswith(f"{tmp_path}/") and f": {key}: " in message, message
    assert problem in message, message


def test_a_crl_not_signed_by_its_ca_is_refused(tmp_path: Path, base: dict) -> None:
    base["trust"]["crl"] = ["forged.crl", "other.crl"]
    with pytest.raises(ConfigError, match=r"trust\.crl\[0\]: the CRL of .* not signed by the configured CA"):
        load_config(write(tmp_path, base))
