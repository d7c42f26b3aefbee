"""Config errors name the file, the key and what is wrong."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from xmppbridge.config.settings import load_config
from xmppbridge.errors import ConfigError
from xmppbridge.signing.keys import generate_identity_files


@pytest.fixture
def base(tmp_path: Path) -> dict:
    generate_identity_files("test", tmp_path / "k.pem", tmp_path / "c.pem")
    return {
        "component": {"jid": "bridge.a.test", "secret": "s", "server": {"host": "127.0.0.1", "port": 5347}},
        "pubsub": {"service": "pubsub.a.test"},
        "signing": {"key": "k.pem", "cert": "c.pem"},
        "trust": {"anchors": ["c.pem"]},
        "subscriptions": [{"service": "pubsub.b.test", "nodes": "all"}],
        "store": {"path": "data/x.sqlite"},
        "feed": {"listen": "127.0.0.1:8080"},
    }


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_complete_config_loads_with_paths_relative_to_the_file(tmp_path: Path, base: dict) -> None:
    config = load_config(write(tmp_path, base))
    assert config.jid == "bridge.a.test" and config.node_prefix == "iodef"
    assert config.signing_key == tmp_path / "k.pem"
    assert config.store_path == tmp_path / "data/x.sqlite"
    assert config.subscriptions[0].nodes is None  # "all"
    assert (config.discovery_interval, config.check_interval) == (60, 60)


def test_checks_have_their_own_interval(tmp_path: Path, base: dict) -> None:
    base["pubsub"] |= {"discovery_interval": 5, "check_interval": 300}
    config = load_config(write(tmp_path, base))
    assert (config.discovery_interval, config.check_interval) == (5, 300)


def test_a_subscription_is_recognised_however_its_service_is_spelled(tmp_path: Path, base: dict) -> None:
    base["subscriptions"] = [{"service": "PubSub.B.Test", "nodes": "all"}, {"service": "pep@c.test/x"}]
    config = load_config(write(tmp_path, base))
    assert config.sources.follows("pubsub.b.test") and config.sources.follows("PubSub.B.Test")
    assert config.sources.follows("pep@c.test")
    assert not config.sources.follows("pubsub.b.test.evil") and not config.sources.follows("a@@b")
    # One key per peer: the catch-up (which uses these) stores under the form notifications come from.
    assert [s.service for s in config.subscriptions] == ["pubsub.b.test", "pep@c.test"]


def test_signing_domains_add_to_the_certificate_domains(tmp_path: Path, base: dict) -> None:
    assert load_config(write(tmp_path, base)).signing_domains == ()  # default: the certificate's only
    base["signing"]["domains"] = ["CSIRT-B.Example.", "*.c.test"]
    assert load_config(write(tmp_path, base)).signing_domains == ("csirt-b.example", "*.c.test")
    base["signing"]["domains"] = "b.test"  # one domain may be written without a list
    assert load_config(write(tmp_path, base)).signing_domains == ("b.test",)


def test_secret_from_file(tmp_path: Path, base: dict) -> None:
    (tmp_path / "secret").write_text("from-file\n")
    del base["component"]["secret"]
    base["component"]["secret_file"] = "secret"
    assert load_config(write(tmp_path, base)).secret == "from-file"


@pytest.mark.parametrize(("change", "key", "problem"), [
    (lambda c: c["component"].pop("jid"), "component.jid", "is required"),
    (lambda c: c["component"].update(jid="user@bridge.a.test"), "component.jid", "bare domain"),
    (lambda c: c["component"]["server"].update(port="5347x"), "component.server.port", "must be a int"),
    (lambda c: c["component"]["server"].update(port=70000), "component.server.port", "TCP port"),
    (lambda c: c["component"].update(secret_file="x"), "component.secret", "exactly one"),
    (lambda c: c["signing"].update(key="missing.pem"), "signing.key", "does not exist"),
    (lambda c: c["subscriptions"][0].update(nodes=[]), "subscriptions[0].nodes", "'all' or a non-empty list"),
    (lambda c: c.update(subscriptions=["pubsub.b.test"]), "subscriptions[0]", "mapping"),
    (lambda c: c["subscriptions"][0].update(service="a@@b"), "subscriptions[0].service", "not a JID"),
    (lambda c: c["feed"].update(listen="8080"), "feed.listen", "host:port"),
    (lambda c: c.update(iodef={"schema_mode": "lenient"}), "iodef.schema_mode", "strict"),
    (lambda c: c.update(limits={"max_document_bytes": 10_000_000}), "limits.max_document_bytes", "512 KB"),
    (lambda c: c["pubsub"].update(check_interval=0), "pubsub.check_interval", "positive number of seconds"),
    (lambda c: c["pubsub"].update(discovery_interval=-1), "pubsub.discovery_interval", "positive"),
    (lambda c: c["pubsub"].update(check_pause=-1), "pubsub.check_pause", "between 0 (list every round)"),
    (lambda c: c["pubsub"].update(check_pause="often"), "pubsub.check_pause", "got str 'often'"),
    (lambda c: c["signing"].update(domains=["csirt b.example"]), "signing.domains", "'csirt b.example' is"),
    (lambda c: c["signing"].update(domains=[]), "signing.domains", "non-empty list of domain names"),
    (lambda c: c["signing"].update(domains={"b.test": 1}), "signing.domains", "must be a list or str"),
    (lambda c: c["signing"].update(domains=[7]), "signing.domains", "7 is not a domain name"),
    (lambda c: c["signing"].update(domains=["a.test", "*"]), "signing.domains", 'cannot be "*"'),
])
def test_errors_name_file_key_and_problem(tmp_path: Path, base: dict, change, key: str, problem: str) -> None:
    change(base)
    path = write(tmp_path, base)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("component: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_store_url_or_path(tmp_path: Path, base: dict) -> None:
    base["store"] = {"url": "postgresql://xmppbridge@db.a.test:5432/xmppbridge"}
    config = load_config(write(tmp_path, base))
    assert config.store_target == config.store_url == "postgresql://xmppbridge@db.a.test:5432/xmppbridge"
    base["store"]["path"] = "data/x.sqlite"
    with pytest.raises(ConfigError, match=r"store\.url: give store\.path \(SQLite\) or store\.url"):
        load_config(write(tmp_path, base))
    base["store"] = {"url": "mysql://db.a.test/x"}
    with pytest.raises(ConfigError, match=r"store\.url: must be a PostgreSQL URL"):
        load_config(write(tmp_path, base))


def test_an_unreachable_postgresql_store_says_so_at_once(tmp_path: Path) -> None:
    from xmppbridge.store import Store
    from xmppbridge.store.pg import StoreUnavailable

    with socket.socket() as taken:  # a port nothing answers on
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    with pytest.raises(StoreUnavailable, match=r"cannot reach the PostgreSQL store postgresql://u:\*\*\*@"
                                                r"127\.0\.0\.1:\d+/x: .*check store\.url"):
        Store(f"postgresql://u:secret@127.0.0.1:{port}/x")
