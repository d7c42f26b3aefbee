"""The bridge on ejabberd 23.01, federated with a bridge on Prosody: a.test runs Prosody, e.test runs
ejabberd, s2s between them with self-signed certificates and dialback. Both bridges run with the chat
wiring, so people on ejabberd get summaries too."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from tests.integration import eventually, loopback_consortium, running
from tests.test_integration_chat import Profanity
from tests.test_integration_federation import iodef2
from xmppbridge.demo.accounts import Account, create_accounts
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.ejabberd import EjabberdServer
from xmppbridge.store import Store

pytestmark = pytest.mark.integration

CHAT = {"chat": {"readers": {"all": ["analyst@e.test"]}},
        "rooms": [{"room": "soc@rooms.e.test", "post": ["need-to-know"], "allow": ["need-to-know"]}]}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, Account]]:
    for tool in ("prosody", "ejabberdctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    # Feed ports 18391+20*slot and the next; the chat suite uses 18381+20*slot.
    consortium = loopback_consortium(tmp_path_factory.mktemp("mixed"), {"a": 64, "e": 66},
                                     feed_port_base=18391, discovery_interval=1.0)
    prosody = consortium["e"].prosody
    consortium["e"].prosody = EjabberdServer(prosody.domain, prosody.ip, prosody.workdir, prosody.secret,  # type: ignore[assignment]
                                             peers=prosody.peers)
    consortium.write_files()
    config = consortium["e"].config_path
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), **CHAT}, sort_keys=False))
    accounts: list[Account] = []

    def create() -> None:
        accounts.extend(create_accounts(consortium["e"].prosody, ["analyst"]))  # type: ignore[arg-type]

    with running(consortium, before_bridges=create, timeout=60):
        yield consortium, accounts[0]


def entries(consortium: Consortium, name: str, incident_id: str) -> list:
    with closing(Store(consortium[name].workdir / "data" / f"{name}.sqlite")) as store:
        return [e for e in store.entries(limit=10_000) if e.incident.id == incident_id]


def test_ejabberd_member_publishes_and_prosody_member_mirrors(mixed: tuple[Consortium, Account],
                                                              tmp_path: Path) -> None:
    consortium, _ = mixed
    document = tmp_path / "inc.xml"
    # The IncidentID names the CSIRT the signing key speaks for (signing.trust).
    document.write_bytes(iodef2("INC-E1").replace(b"csirt.a.test", b"csirt.e.test"))
    result = consortium.publish("e", document)
    assert result.returncode == 0, result.stderr + consortium.log_tail("e")
    assert "published to iodef/need-to-know/mitigation on pubsub.e.test" in result.stdout
    [entry] = eventually(lambda: entries(consortium, "a", "INC-E1"), timeout=30, what="INC-E1 at a.test")
    assert entry.service == "pubsub.e.test" and entry.origin == "remote"

    # An update replaces the item (same id) on ejabberd and the mirror follows.
    document.write_bytes(iodef2("INC-E1", description="Revised: also 192.0.2.99").replace(b"csirt.a.test",
                                                                                         b"csirt.e.test"))
    assert consortium.publish("e", document).returncode == 0
    eventually(lambda: [e for e in entries(consortium, "a", "INC-E1") if e.revision == 2], timeout=30,
               what="the update at a.test")


def test_prosody_member_publishes_and_ejabberd_member_mirrors_and_tells_people(
        mixed: tuple[Consortium, Account], tmp_path: Path) -> None:
    consortium, analyst = mixed
    person = Profanity(tmp_path / "profanity", analyst)
    try:
        person.start()
        person.reply_to("bridge.e.test", "subscribe need-to-know", "Subscribed to need-to-know.")
        person.join("soc@rooms.e.test")
        document = tmp_path / "inc.xml"
        document.write_bytes(iodef2("INC-A1", description="Phishing kit at 198.51.100.7"))
        result = consortium.publish("a", document)
        assert result.returncode == 0, result.stderr
        [entry] = eventually(lambda: entries(consortium, "e", "INC-A1"), timeout=30, what="INC-A1 at e.test")
        assert entry.service == "pubsub.a.test"
        summary = eventually(lambda: next((m for m in person.received("bridge.e.test") if "INC-A1" in m),
                                          None), timeout=30, what="the summary at analyst@e.test")
        assert summary.startswith("New [need-to-know/mitigation] Phishing kit at 198.51.100.7")
        eventually(lambda: any("INC-A1" in m for m in person.received("soc@rooms.e.test")), timeout=30,
                   what="the summary in soc@rooms.e.test")
    finally:
        person.stop()
