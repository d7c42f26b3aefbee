"""Subscription approval on ejabberd (RFC 8600 §8.3.4 ``authorize``, XEP-0060 §8.6): p.test runs
ejabberd and publishes; s.test and d.test run Prosody and follow p, but p's audience names neither
(only x, a member with no server here). Their subscriptions are held for p's operator, who is told in
chat; s is approved with the CLI and receives p's items, d is denied with the ad-hoc command and
receives nothing, and its items request is refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml
from slixmpp.exceptions import IqError

from tests.integration import eventually, loopback_consortium, running
from tests.test_integration_chat import signed_in
from tests.test_integration_federation import iodef2
from xmppbridge.demo.accounts import Account, create_accounts
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.ejabberd import EjabberdServer
from xmppbridge.signing.keys import generate_identity_files
from xmppbridge.store import Store
from xmppbridge.xmpp.authorization import UNSUPPORTED

pytestmark = pytest.mark.integration

NODE = "iodef/need-to-know/mitigation"


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    for tool in ("prosody", "ejabberdctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    # Feed ports 18541+20*slot and the next two.
    consortium = loopback_consortium(tmp_path_factory.mktemp("approval"), {"p": 112, "s": 113, "d": 114},
                                     feed_port_base=18541, discovery_interval=1.0)
    server = consortium["p"].prosody
    consortium["p"].prosody = EjabberdServer(server.domain, server.ip, server.workdir, server.secret,  # type: ignore[assignment]
                                             peers=server.peers)
    consortium.write_files(audiences={"p": {"need-to-know": ["x"]}})
    _add_member_x(consortium)
    accounts.clear()

    def create() -> None:  # p's analyst administers p's bridge (admins:); guest does not
        accounts.extend(create_accounts(consortium["p"].prosody, ["analyst", "guest"]))  # type: ignore[arg-type]

    with running(consortium, before_bridges=create, timeout=60):
        yield consortium


accounts: list[Account] = []


def _add_member_x(consortium: Consortium) -> None:
    """x is in p's registry and audience but runs no server: the audience is not empty (p would refuse
    to publish to a node nobody may read), and neither s nor d is in it."""
    keys = consortium.workdir / "keys"
    generate_identity_files("CSIRT X signing key (x.test)", keys / "x.key", keys / "x.crt",
                            domains=("x.test",))
    path = consortium["p"].config_path
    config = yaml.safe_load(path.read_text())
    config["members"].append({"name": "x", "bridge": "bridge.x.test", "pubsub": "pubsub.x.test",
                              "domains": ["x.test"], "certificate": "keys/x.crt", "follow": False})
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def cli(consortium: Consortium, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xmppbridge.cli", *args[:2], "-c",
                           str(consortium[name].config_path), *args[2:]],
                          capture_output=True, text=True, timeout=90)


def incident_ids(consortium: Consortium, name: str) -> set[str]:
    with closing(Store(consortium[name].store_path)) as store:
        return {e.incident.id for e in store.entries(limit=10_000)}


def publish(consortium: Consortium, tmp_path: Path, incident_id: str) -> None:
    document = tmp_path / f"{incident_id}.xml"
    # The IncidentID names the CSIRT p's signing key speaks for.
    document.write_bytes(iodef2(incident_id).replace(b"csirt.a.test", b"csirt.p.test"))
    result = consortium.publish("p", document)
    assert result.returncode == 0, result.stderr + consortium.log_tail("p")


async def until(probe: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """``eventually`` for a test that must let its own XMPP client read meanwhile."""
    for _ in range(int(timeout * 10)):
        if probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def adhoc(client: Any, node: str, fill: dict[str, str] | None = None) -> Any:
    reply = await client.plugin["xep_0050"].send_command("bridge.p.test", node, timeout=20)
    if fill is None:
        return reply
    answer = client.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in fill.items():
        answer.add_field(var=var, value=value)
    session = reply["command"]["sessionid"]
    return await client.plugin["xep_0050"].send_command("bridge.p.test", node, action="complete",
                                                        payload=answer, sessionid=session, timeout=20)


async def test_held_approved_denied(consortium: Consortium, tmp_path: Path) -> None:
    analyst, guest = accounts
    async with signed_in(analyst, "xep_0050") as admin:
        notices: list[str] = []
        admin.add_event_handler("message", lambda msg: notices.append(str(msg["body"])))
        # Available before anything is asked: the server delivers chat to a bare JID only to available
        # resources (and keeps nothing for later: no mod_offline), so wait for our presence's echo.
        available = asyncio.Event()
        admin.add_event_handler("presence_available",
                                lambda presence: presence["from"] == admin.boundjid and available.set())
        admin.send_presence()
        await asyncio.wait_for(available.wait(), 20)
        await _flow(consortium, tmp_path, admin, guest, notices)


async def _flow(consortium: Consortium, tmp_path: Path, admin: Any, guest: Account,
                notices: list[str]) -> None:
    publish(consortium, tmp_path, "INC-P1")  # creates the node, with the authorize access model
    created = f"created node {NODE} on pubsub.p.test (access model authorize)"
    assert created in consortium.log_tail("p", 40_000)

    # s and d discover the node and ask to subscribe: both held, neither gets anything yet.
    def pending() -> str:
        return cli(consortium, "p", "members", "pending").stdout

    # (Waits while the admin is signed in let its client read: ``until``, not ``eventually``.)
    await until(lambda: "bridge.s.test pending" in pending() and "bridge.d.test pending" in pending(),
                f"both requests pending at p:\n{pending()}\n{consortium.log_tail('p')}", timeout=30)
    log = consortium.log_tail("p", 40_000)
    assert f"audit: approval bridge.s.test on {NODE} held" in log
    assert "INC-P1" not in incident_ids(consortium, "s") | incident_ids(consortium, "d")

    approved = cli(consortium, "p", "members", "approve", NODE, "bridge.s.test")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"bridge.s.test approved on {NODE}: sent to the pubsub service"
    # The admins were told in chat; d is denied with the ad-hoc command, which only admins may run.
    await until(lambda: any(n.startswith("bridge.d.test asks to subscribe to") for n in notices),
                f"the admin's notice (got {notices})")
    with pytest.raises(IqError) as refused:
        async with signed_in(guest, "xep_0050") as stranger:
            await adhoc(stranger, "approval")
    assert refused.value.condition == "forbidden"
    denied = await adhoc(admin, "approval", {"request": f"{NODE} bridge.d.test", "decision": "deny"})
    assert denied["command"]["notes"] == [("info", f"bridge.d.test denied on {NODE}: the bridge sends it "
                                                   "to the pubsub service")]
    with closing(Store(consortium["p"].store_path)) as store:
        await until(lambda: (row := store.approval(NODE, "bridge.d.test")) is not None
                    and row.sent_at is not None, "the denial sent")

    # Items flow to s: the next one by notification, the earlier one by s's periodic check.
    publish(consortium, tmp_path, "INC-P2")
    await until(lambda: {"INC-P1", "INC-P2"} <= incident_ids(consortium, "s"),
                f"p's items at s\n{consortium.log_tail('s')}", timeout=30)
    with closing(Store(consortium["p"].store_path)) as store:
        assert store.approved_jids(NODE) == frozenset({"bridge.s.test"})

    # d was denied: its items request is refused (doctor asks through d's running bridge), and it holds
    # none of p's items, also after s received both.
    report = json.loads(cli(consortium, "d", "doctor", "--json").stdout)
    [check] = [c for c in report["checks"] if c["name"] == "peer pubsub.p.test subscribe+read"]
    # ejabberd answers forbidden, or unexpected-request when the request is read while the bridge's
    # repeated denial of the doctor's new subscription is under way, or refuses that subscription itself
    # (not-authorized) when the denial is already recorded: a refusal each way.
    assert check["status"] == "FAIL" and check["found"].startswith(
        (f"may not read items of {NODE}: ", f"may not subscribe to {NODE}: ")), check
    assert not {"INC-P1", "INC-P2"} & incident_ids(consortium, "d")

    listed = cli(consortium, "p", "members", "list").stdout
    assert f"{NODE} bridge.s.test approved" in listed and f"{NODE} bridge.d.test denied" in listed
    with urllib.request.urlopen(consortium["p"].metrics_url + "metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'xmppbridge_subscription_requests{state="approved"} 1.0' in metrics
    assert 'xmppbridge_subscription_requests{state="denied"} 1.0' in metrics

    # Revocation: denying s later cancels its subscription (§8.8.2), and its items request is refused.
    revoked = cli(consortium, "p", "members", "deny", NODE, "bridge.s.test")
    assert revoked.stdout.strip() == f"bridge.s.test denied on {NODE}: sent to the pubsub service", revoked
    report = json.loads(cli(consortium, "s", "doctor", "--json").stdout)
    [check] = [c for c in report["checks"] if c["name"] == "peer pubsub.p.test subscribe+read"]
    assert check["status"] == "FAIL" and check["found"].startswith(f"may not read items of {NODE}: "), check
    with closing(Store(consortium["p"].store_path)) as store:
        assert store.approved_jids(NODE) == frozenset()
    # s runs Prosody, which has no authorize: its bridge says so once, at its start.
    assert consortium.log_tail("s", 100_000).count(UNSUPPORTED) == 1


def test_a_decision_made_while_the_bridge_is_down_is_sent_when_it_starts(consortium: Consortium,
                                                                        tmp_path: Path) -> None:
    """After the first test s is denied (revoked). With p's bridge stopped, s asks again (its renewals)
    and nobody is there to read the form; the operator approves with the CLI meanwhile. When p's bridge
    starts it sends the decision (and asks ejabberd for the requests still pending, §8.7): s is let in,
    d stays out."""
    consortium.stop_bridge("p")
    approved = cli(consortium, "p", "members", "approve", NODE, "bridge.s.test", "--timeout", "1")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip().endswith("(it is not running or not connected) and sends it when it is")
    consortium.start_bridge("p", 60)
    with closing(Store(consortium["p"].store_path)) as store:
        eventually(lambda: (row := store.approval(NODE, "bridge.s.test")) is not None
                   and row.sent_at is not None, what="the approval sent after the start")
    publish(consortium, tmp_path, "INC-P3")
    eventually(lambda: "INC-P3" in incident_ids(consortium, "s"), timeout=30,
               what=f"INC-P3 at s after the restart\n{consortium.log_tail('s')}\n{consortium.log_tail('p')}")
    assert "INC-P3" not in incident_ids(consortium, "d")
