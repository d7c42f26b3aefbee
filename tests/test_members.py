"""The member registry and audiences: what derives from one entry, what a contradicting registry gets,
and what publishing refuses (an empty audience, TLP:AMBER+STRICT)."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.hostile_corpus import MAX_BYTES, ec_identity, iodef2
from tests.pki import issue, make_ca, pem
from xmppbridge.config.settings import load_config
from xmppbridge.errors import ConfigError, InputRejected
from xmppbridge.iodef.classify import classify
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.paths.publish import prepare
from xmppbridge.paths.receive import check_item
from xmppbridge.policy.audiences import AUDIENCE_EMPTY, Audiences, parse_audiences
from xmppbridge.signing.keys import generate_identity_files, self_signed_certificate
from xmppbridge.signing.sign import sign_document
from xmppbridge.signing.trust import TrustStore

A = ec_identity("CSIRT A", domains=("a.test",))


def member(tmp_path: Path, name: str, **extra: object) -> dict:
    cert = tmp_path / f"{name}.crt"
    if not cert.exists():
        generate_identity_files(f"CSIRT {name}", tmp_path / f"{name}.key", cert, domains=(f"{name}.test",))
    return {"name": name, "bridge": f"bridge.{name}.test", "pubsub": f"pubsub.{name}.test",
            "domains": [f"{name}.test"], "certificate": f"{name}.crt", **extra}


@pytest.fixture
def base(tmp_path: Path) -> dict:
    member(tmp_path, "a")
    return {
        "component": {"jid": "bridge.a.test", "secret": "s"},
        "pubsub": {"service": "pubsub.a.test"},
        "signing": {"key": "a.key", "cert": "a.crt"},
        "members": [member(tmp_path, "a"), member(tmp_path, "b"), member(tmp_path, "c")],
        "audiences": {"partner": "all", "need-to-know": ["b", "c"], "need-to-know/mitigation": ["b"],
                      "private": []},
        "store": {"path": "x.sqlite"},
        "feed": {"listen": "127.0.0.1:8080"},
    }


def load(tmp_path: Path, data: dict):  # noqa: ANN201 - Config
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def error(tmp_path: Path, data: dict) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load(tmp_path, data)
    return str(excinfo.value)


# -- what one entry gives -----------------------------------------------------------------------------------

def test_one_entry_gives_trust_subscription_domains_and_audience(tmp_path: Path, base: dict) -> None:
    config = load(tmp_path, base)
    assert config.registry.own == "a" and [m.name for m in config.registry.peers()] == ["b", "c"]
    assert sorted(s.service for s in config.subscriptions) == ["pubsub.b.test", "pubsub.c.test"]
    assert config.sources.follows("PubSub.B.test") and not config.sources.follows("pubsub.a.test")
    assert len(config.trust) == 2  # b's and c's certificates pinned; our own is not
    assert "a.test" in config.signing_domains
    # Items from b's service are accepted only with b's signature.
    assert config.trust.sources["pubsub.b.test"].signers
    assert config.node_audience("iodef/need-to-know/mitigation").bridges == {"bridge.b.test"}
    assert config.node_audience("iodef/need-to-know/watch").bridges == {"bridge.b.test", "bridge.c.test"}
    assert config.node_audience("iodef/partner/other").members == {"b", "c"}
    assert config.node_audience("iodef/public/other").open
    assert config.node_audience("iodef/private/other").empty
    assert config.node_audience("iodef/default/other").empty  # nobody beyond what is named
    assert config.node_audience("elsewhere/x").empty


def test_removing_a_member_is_one_deletion(tmp_path: Path, base: dict) -> None:
    base["members"] = [m for m in base["members"] if m["name"] != "c"]
    base["audiences"] = {"partner": "all", "need-to-know": ["b"]}
    config = load(tmp_path, base)
    assert [s.service for s in config.subscriptions] == ["pubsub.b.test"]
    assert len(config.trust) == 1
    assert config.node_audience("iodef/partner/watch").bridges == {"bridge.b.test"}


def test_a_shared_registry_file_serves_every_member(tmp_path: Path, base: dict) -> None:
    (tmp_path / "consortium.yaml").write_text(yaml.safe_dump({"members": base["members"]}))
    base["members"] = "consortium.yaml"
    assert load(tmp_path, base).registry.own == "a"
    base["component"]["jid"] = "bridge.b.test"
    base["signing"] = {"key": "b.key", "cert": "b.crt"}
    base["audiences"] = {"partner": ["a"]}
    config = load(tmp_path, base)
    assert config.registry.own == "b" and config.node_audience("iodef/partner/watch").members == {"a"}


def test_follow_false_trusts_without_subscribing(tmp_path: Path, base: dict) -> None:
    base["members"][2]["follow"] = False
    config = load(tmp_path, base)
    assert [s.service for s in config.subscriptions] == ["pubsub.b.test"] and len(config.trust) == 2


def test_a_member_with_a_ca_is_trusted_through_it(tmp_path: Path, base: dict) -> None:
    ca = make_ca("CSIRT C CA")
    (tmp_path / "c-ca.pem").write_bytes(pem(ca.certificate))
    del base["members"][2]["certificate"]
    base["members"][2]["ca"] = "c-ca.pem"
    config = load(tmp_path, base)
    leaf = issue(ca, "CSIRT C signer", domains=("c.test",)).certificate
    [ref] = config.trust.sources["pubsub.c.test"].signers
    assert ref.matches(leaf) and config.trust.bound_domains(leaf) == ("c.test",)


# -- contradictions -----------------------------------------------------------------------------------------

def test_two_members_claiming_one_domain_are_refused(tmp_path: Path, base: dict) -> None:
    base["members"][2]["domains"] = ["csirt.b.test"]
    message = error(tmp_path, base)
    assert "members[2].domains" in message and "members[1] (b)" in message


@pytest.mark.parametrize(("field", "value"),
                         [("name", "b"), ("bridge", "Bridge.B.test"), ("pubsub", "pubsub.b.test")])
def test_two_members_with_one_name_or_jid_are_refused(tmp_path: Path, base: dict, field: str,
                                                      value: str) -> None:
    base["members"][2][field] = value
    assert f"members[2].{field}" in error(tmp_path, base)


def test_a_member_without_a_certificate_is_refused(tmp_path: Path, base: dict) -> None:
    del base["members"][1]["certificate"]
    assert "members[1]: has no certificate" in error(tmp_path, base)


def test_a_member_whose_only_certificate_expired_is_refused(tmp_path: Path, base: dict) -> None:
    old = self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "CSIRT B", domains=("b.test",),
                                  not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC), days=30)
    (tmp_path / "b-old.crt").write_bytes(pem(old))
    base["members"][1]["certificate"] = "b-old.crt"
    assert "could sign with: expired on 2020-01-31" in error(tmp_path, base)
    base["members"][1]["certificate"] = ["b-old.crt", "b.crt"]  # rotation: one usable is enough
    assert len(load(tmp_path, base).trust) == 3  # both pinned; the expired one fails at verification


def test_our_entry_must_hold_our_signing_certificate(tmp_path: Path, base: dict) -> None:
    base["members"][0]["certificate"] = "b.crt"
    assert "does not hold our signing.cert" in error(tmp_path, base)


def test_audiences_name_members_only(tmp_path: Path, base: dict) -> None:
    base["audiences"]["need-to-know"] = ["b", "zz"]
    assert "zz is not a member" in error(tmp_path, base)
    base["audiences"] = {"secret": ["b"]}
    assert "secret: is not a restriction" in error(tmp_path, base)
    base["audiences"] = {"public": ["b"]}
    assert "open to everyone" in error(tmp_path, base)


def test_whitelist_and_audiences_cannot_both_say_it(tmp_path: Path, base: dict) -> None:
    base["pubsub"]["whitelist"] = ["bridge.b.test"]
    assert "pubsub.whitelist" in error(tmp_path, base)


def test_a_registry_service_listed_again_in_subscriptions_is_refused(tmp_path: Path, base: dict) -> None:
    base["subscriptions"] = [{"service": "pubsub.b.test", "nodes": "all"}]
    assert "member b's service" in error(tmp_path, base)


def test_without_a_registry_the_whitelist_reads_every_non_public_category(tmp_path: Path) -> None:
    generate_identity_files("a", tmp_path / "k.pem", tmp_path / "c.pem")
    config = load(tmp_path, {"component": {"jid": "bridge.a.test", "secret": "s"},
                             "pubsub": {"service": "pubsub.a.test", "whitelist": ["Bridge.B.test"]},
                             "signing": {"key": "k.pem", "cert": "c.pem"}})
    for restriction in ("partner", "need-to-know", "private", "default"):
        assert config.node_audience(f"iodef/{restriction}/watch").bridges == {"bridge.b.test"}


# -- publishing against audiences ---------------------------------------------------------------------------

AUDIENCES = parse_audiences({"partner": "all", "need-to-know": ["b"], "need-to-know/watch": []},
                            {"b": "bridge.b.test", "c": "bridge.c.test"})


def test_an_incident_nobody_may_read_is_refused_at_publish_with_the_reason() -> None:
    publish = dict(prefix="iodef", identity=A, max_bytes=MAX_BYTES, audiences=AUDIENCES)
    assert prepare(iodef2("N-1", name="a.test"), **publish)  # type: ignore[arg-type]
    for restriction, purpose in (("need-to-know", "watch"), ("private", "mitigation")):
        with pytest.raises(InputRejected) as excinfo:
            prepare(iodef2("N-2", name="a.test", restriction=restriction, purpose=purpose), **publish)  # type: ignore[arg-type]
        assert excinfo.value.reason == AUDIENCE_EMPTY and f"{restriction}/{purpose}" in str(excinfo.value)
    assert prepare(iodef2("N-3", name="a.test", restriction="public"), prefix="iodef", identity=A,
                   max_bytes=MAX_BYTES, audiences=Audiences())


def test_the_most_specific_audience_key_wins() -> None:
    assert AUDIENCES.of("need-to-know", "mitigation").members == {"b"}
    assert AUDIENCES.of("need-to-know", "watch").empty
    assert AUDIENCES.rights_of("c").allows("partner", "watch")
    assert not AUDIENCES.rights_of("c").allows("need-to-know", "mitigation")


# -- TLP 2.0 in ext-restriction (FIRST TLP 2.0) -------------------------------------------------------------

def tlp2(label: str) -> bytes:
    return iodef2("T-1", name="a.test", restriction="ext-value").replace(
        b'restriction="ext-value"', f'restriction="ext-value" ext-restriction="{label}"'.encode())


@pytest.mark.parametrize(("label", "canonical"), [
    ("TLP:CLEAR", "public"), ("tlp:green", "partner"), ("TLP:AMBER", "need-to-know"), ("TLP:RED", "private"),
    ("CLEAR", "public"), ("TLP:AMBER+STRICT", "private"), ("tlp-clear", "private"), ("TLP:WHITE", "private"),
])
def test_tlp2_labels_map_as_first_defines_them(label: str, canonical: str) -> None:
    [incident] = classify(parse_untrusted(tlp2(label), max_bytes=MAX_BYTES), "2.0")
    assert incident.restriction == canonical


def test_amber_strict_is_never_shared_and_refused_by_receivers_too() -> None:
    with pytest.raises(InputRejected) as excinfo:
        prepare(tlp2("TLP:AMBER+STRICT"), prefix="iodef", identity=A, max_bytes=MAX_BYTES)
    assert excinfo.value.reason == "originator-only"
    signed = sign_document(parse_untrusted(tlp2("TLP:AMBER+STRICT"), max_bytes=MAX_BYTES), A)
    with pytest.raises(InputRejected) as excinfo:
        check_item(TrustStore.from_certificates([A.certificate]), service="pubsub.a.test",
                   node="iodef/private/mitigation", payload=signed, max_bytes=MAX_BYTES)
    assert excinfo.value.reason == "originator-only"


# -- config upgrade ---------------------------------------------------------------------------------------

def legacy(tmp_path: Path) -> Path:
    """A config as written before the registry: anchors, domain bindings, subscriptions, a whitelist."""
    (tmp_path / "trust").mkdir()
    for name in ("a", "b", "c"):
        member(tmp_path, name)
    for name in ("b", "c"):
        (tmp_path / "trust" / f"{name}.crt").write_bytes((tmp_path / f"{name}.crt").read_bytes())
    data = {"component": {"jid": "bridge.a.test", "secret": "s"},
            "pubsub": {"service": "pubsub.a.test", "whitelist": ["bridge.b.test", "bridge.c.test"]},
            "signing": {"key": "a.key", "cert": "a.crt", "domains": ["a.test"]},
            "trust": {"anchors": ["trust"]},
            "subscriptions": [{"service": "pubsub.b.test", "nodes": "all"},
                              {"service": "pubsub.c.test", "nodes": ["iodef/partner/watch"],
                               "allow_domains": ["partner.example"]}],
            "store": {"path": "x.sqlite"}, "feed": {"listen": "127.0.0.1:8080"}}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def upgrade_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xmppbridge.cli", "config", "upgrade", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_config_upgrade_writes_the_same_bridge_as_a_registry(tmp_path: Path) -> None:
    path = legacy(tmp_path)
    old = load_config(path)
    shown = upgrade_cli("-c", path)
    assert shown.returncode == 0, shown.stderr
    assert "pubsub.b.test: member b.test, bridge bridge.b.test" in shown.stderr
    assert path.read_text().startswith("component")  # not written without --write
    written = upgrade_cli("-c", path, "--write")
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "bridge.yaml.bak").exists()
    data = yaml.safe_load(path.read_text())
    assert "subscriptions" not in data and "whitelist" not in data["pubsub"] and "trust" not in data
    assert [m["name"] for m in data["members"]] == ["a.test", "b.test", "c.test"]
    assert data["members"][2]["domains"] == ["c.test", "partner.example"]
    assert data["members"][2]["nodes"] == ["iodef/partner/watch"]
    new = load_config(path)
    assert set(new.trust.certificates) == set(old.trust.certificates)
    assert new.node_audience("iodef/private/watch").bridges == {"bridge.b.test", "bridge.c.test"}
    assert new.signing_domains == ("a.test",)
    assert upgrade_cli("-c", path).returncode == 2  # already upgraded


def test_config_upgrade_refuses_to_guess_a_bridge(tmp_path: Path) -> None:
    path = legacy(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["pubsub"]["whitelist"].append("bridge.d.test")
    path.write_text(yaml.safe_dump(data))
    result = upgrade_cli("-c", path)
    assert result.returncode == 2 and "bridge.d.test, which no subscription matches" in result.stderr
    data["pubsub"]["whitelist"] = ["bridge.b.test"]
    path.write_text(yaml.safe_dump(data))
    result = upgrade_cli("-c", path)
    assert result.returncode == 2 and "no whitelisted bridge JID of c.test" in result.stderr


def test_a_ca_entry_is_checked_even_beside_a_good_certificate(tmp_path: Path, base: dict) -> None:
    base["members"][1]["ca"] = "c.crt"  # a member's own certificate, not a CA
    assert "members[1].ca: is not a CA certificate" in error(tmp_path, base)
