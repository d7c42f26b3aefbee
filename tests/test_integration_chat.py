"""People on real XMPP clients: Profanity (not slixmpp) in tmux chats with the bridge on real Prosody
servers; a MUC room gets summaries; an admin runs ad-hoc commands; /metrics parses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import eventually, loopback_consortium, running
from tests.test_integration_federation import iodef2
from xmppbridge.demo.accounts import Account, ProsodyAccounts, create_accounts, write_credentials
from xmppbridge.demo.consortium import Consortium

pytestmark = pytest.mark.integration
Running = tuple[Consortium, dict[str, Account]]  # the consortium and the chat accounts by JID

CHAT_SECTIONS = {
    "chat": {"readers": {"all": ["analyst@a.test", "analyst@b.test"]}},
    "rooms": [{"room": "soc@rooms.b.test", "nick": "bridge", "post": ["public", "need-to-know"],
               "allow": ["need-to-know"]}],
    "admins": ["analyst@b.test"],
}


class Profanity:
    """Profanity (Debian's console XMPP client) in a private tmux server, typing like a person.

    What it receives is read back from its own chat history database (chatlog.db), which it writes as
    messages arrive; the screen is kept for failure messages."""

    def __init__(self, home: Path, account: Account) -> None:
        self.home, self.account = home, account
        self.socket = f"xb-{os.getpid()}-{account.user}-{account.domain}"
        self.home.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        home = self.home
        env = f"env HOME={home} XDG_CONFIG_HOME={home}/.config XDG_DATA_HOME={home}/.local/share"
        subprocess.run(["tmux", "-L", self.socket, "new-session", "-d", "-s", "p", "-x", "220", "-y", "50",
                        f"{env} profanity"], check=True)
        eventually(lambda: "Type '/help'" in self.screen(), timeout=15, what="profanity to start")
        a = self.account
        self.type(f"/connect {a.jid} server {a.host} port {a.port} tls trust")
        eventually(lambda: "password" in self.screen().lower(), timeout=10, what="the password prompt")
        self.type(a.password)
        eventually(lambda: "logged in successfully" in self.screen(), timeout=20,
                   what=f"{a.jid} to log in:\n{self.screen()}")

    def type(self, text: str) -> None:
        # "--": generated passwords may start with "-", which tmux would read as an option.
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "p", "-l", "--", text], check=True)
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "p", "Enter"], check=True)

    def join(self, room: str) -> None:
        self.type(f"/join {room} nick analyst")
        eventually(lambda: "You have joined the room" in self.screen(), what=f"joining {room}")

    def screen(self) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p", "-t", "p"],
                                capture_output=True, text=True)
        return result.stdout

    def received(self, sender: str) -> list[str]:
        """Messages from ``sender`` (a bare JID: a contact or a room), oldest first."""
        account = self.account.jid.replace("@", "_at_")
        db = self.home / ".local/share/profanity/database" / account / "chatlog.db"
        if not db.exists():
            return []
        # ``immutable=1``: read without taking SQLite's shared lock. Profanity sets no busy timeout, so
        # a write that meets our lock fails ("database is locked" in its log) and the message is never
        # logged: a poll every few milliseconds made the test lose a room message now and then. Without
        # the lock a read can meet a write half done; that read fails or misses the newest row, and
        # ``eventually`` reads again.
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)) as conn:
                rows = conn.execute("SELECT message FROM ChatLogs WHERE from_jid = ? ORDER BY id",
                                    (sender,)).fetchall()
        except sqlite3.DatabaseError:
            return []
        return [row[0] for row in rows]

    def reply_to(self, to: str, command: str, expect: str, timeout: float = 20) -> str:
        """Send ``command`` to ``to`` and wait for a new message containing ``expect``."""
        seen = len(self.received(to))
        self.type("/win 1")  # from a room's window, /msg would write to an occupant of that room
        self.type(f"/msg {to} {command}")

        def answered() -> str | None:
            return next((m for m in self.received(to)[seen:] if expect in m), None)

        return eventually(answered, timeout=timeout, what=f"{expect!r} from {to}:\n{self.screen()}")

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture(scope="module")
def chat_consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    for tool in ("prosody", "profanity", "tmux"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    workdir = tmp_path_factory.mktemp("chat")
    consortium = loopback_consortium(workdir, {"a": 62, "b": 63}, feed_port_base=18381,
                                     discovery_interval=1.0)
    consortium.write_files()
    for member in consortium.members.values():
        config = yaml.safe_load(member.config_path.read_text())
        member.config_path.write_text(yaml.safe_dump({**config, **CHAT_SECTIONS}, sort_keys=False))
    accounts: list[Account] = []

    def create() -> None:
        accounts.extend(create_accounts(ProsodyAccounts(consortium["a"].prosody), ["analyst"]))
        accounts.extend(create_accounts(ProsodyAccounts(consortium["b"].prosody), ["analyst", "guest"]))
        write_credentials(workdir / "xmpp-credentials", accounts)

    with running(consortium, before_bridges=create, timeout=60):
        yield consortium, {a.jid: a for a in accounts}


@pytest.fixture
def people(chat_consortium: Running,
           tmp_path: Path) -> Iterator[dict[str, Profanity]]:
    _, accounts = chat_consortium
    clients = {jid: Profanity(tmp_path / jid, accounts[jid]) for jid in ("analyst@b.test", "guest@b.test")}
    try:
        for client in clients.values():
            client.start()
        yield clients
    finally:
        for client in clients.values():
            client.stop()


def test_credentials_file(chat_consortium: Running) -> None:
    consortium, _ = chat_consortium
    lines = (consortium.workdir / "xmpp-credentials").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["analyst@a.test", "analyst@b.test", "guest@b.test"]
    assert lines[0].split()[2] == f"{consortium['a'].ip}:5222"
    assert lines[2].split()[2] == f"{consortium['b'].ip}:5222"


def test_subscribe_summary_show_and_stranger(chat_consortium: Running,
                                             people: dict[str, Profanity], tmp_path: Path) -> None:
    consortium, _ = chat_consortium
    analyst, guest = people["analyst@b.test"], people["guest@b.test"]
    assert "subscribe <category>" in analyst.reply_to("bridge.b.test", "help", "Commands:")
    analyst.reply_to("bridge.b.test", "subscribe need-to-know/mitigation",
                     "Subscribed to need-to-know/mitigation.")
    analyst.join("soc@rooms.b.test")

    document = tmp_path / "inc.xml"
    document.write_bytes(iodef2("INC-6001", description="Botnet C2 seen at 192.0.2.10"))
    result = consortium.publish("a", document)
    assert result.returncode == 0, result.stderr

    summary = eventually(lambda: next((m for m in analyst.received("bridge.b.test") if m.startswith("New ")),
                                      None), timeout=30, what="the summary at analyst@b.test")
    assert summary.startswith("New [need-to-know/mitigation] Botnet C2 seen at 192.0.2.10")
    assert "Incident csirt.a.test:INC-6001" in summary and "reported by csirt.a.test" in summary
    assert f"Feed: {consortium['b'].feed_url}entries/" in summary

    shown = analyst.reply_to("bridge.b.test", "show INC-6001", "Botnet C2")
    assert shown.startswith("[need-to-know/mitigation] Botnet C2 seen at 192.0.2.10")

    # The room got the same summary: its config allows need-to-know.
    eventually(lambda: any("INC-6001" in m for m in analyst.received("soc@rooms.b.test")), timeout=30,
               what="the summary in soc@rooms.b.test")

    # A stranger: public only, and no hint that the incident exists.
    not_shown = guest.reply_to("bridge.b.test", "show INC-6001", "INC-6001")
    assert not_shown == "No incident INC-6001 that you may see."
    refused = guest.reply_to("bridge.b.test", "subscribe need-to-know/mitigation", "may not see")
    assert refused.startswith("You may not see need-to-know/mitigation. You may see: public.")
    assert "INC-6001" not in guest.reply_to("bridge.b.test", "latest", "")


@asynccontextmanager
async def signed_in(account: Account, *plugins: str) -> AsyncIterator[Any]:
    """A slixmpp client session as ``account`` (the demo servers' self-signed TLS), closed on the way out."""
    from slixmpp import ClientXMPP

    client = ClientXMPP(account.jid, account.password)
    for plugin in plugins:
        client.register_plugin(plugin)
    client.plugin["feature_mechanisms"].unencrypted_plain = False
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = 0
    started = asyncio.Event()
    client.add_event_handler("session_start", lambda _: started.set())
    client.connect(host=account.host, port=account.port)
    try:
        await asyncio.wait_for(started.wait(), 20)
        yield client
    finally:
        client.disconnect()


async def test_adhoc_status_for_admins_only(chat_consortium: Running) -> None:
    from slixmpp.exceptions import IqError

    _, accounts = chat_consortium

    async def run(jid: str, node: str, fill: dict[str, str] | None = None) -> Any:
        async with signed_in(accounts[jid], "xep_0050") as client:
            adhoc = client.plugin["xep_0050"]
            reply = await adhoc.send_command("bridge.b.test", node, timeout=20)
            if fill is None:
                return reply
            form = reply["command"]["form"]
            answer = client.plugin["xep_0004"].make_form(ftype="submit")
            for var, value in fill.items():
                assert var in [field["var"] for field in form["fields"]]
                answer.add_field(var=var, value=value)
            return await adhoc.send_command("bridge.b.test", node, action="complete", payload=answer,
                                            sessionid=reply["command"]["sessionid"], timeout=20)

    reply = await run("analyst@b.test", "status")
    [(kind, text)] = reply["command"]["notes"]
    assert kind == "info" and text.startswith("bridge bridge.b.test: online")
    assert "peer pubsub.a.test" in text
    with pytest.raises(IqError) as refused:
        await run("guest@b.test", "status")
    assert refused.value.condition == "forbidden"

    paused = await run("analyst@b.test", "pause", {"jid": "soc@rooms.b.test"})
    assert paused["command"]["status"] == "completed"
    assert paused["command"]["notes"] == [("info", "soc@rooms.b.test: paused")]
    resumed = await run("analyst@b.test", "resume", {"jid": "soc@rooms.b.test"})
    assert resumed["command"]["notes"] == [("info", "soc@rooms.b.test: resumed")]
    released = await run("analyst@b.test", "quarantine-release")
    assert released["command"]["notes"] == [("info", "0 of 0 held item(s) released")]


def test_metrics_endpoint(chat_consortium: Running) -> None:
    """On the operator listener; the feed listener has none for anyone but operator users."""
    consortium, _ = chat_consortium
    with urllib.request.urlopen(consortium["b"].metrics_url + "metrics", timeout=5) as response:
        text = response.read().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"xmppbridge_received", "xmppbridge_rejected", "xmppbridge_outbox_depth", "xmppbridge_connected",
            "xmppbridge_publish_latency_seconds", "xmppbridge_receive_seconds", "xmppbridge_auth_failures",
            "xmppbridge_auth_blocks", "xmppbridge_auth_refused"} <= names
    for headers in ({}, consortium["b"].basic_auth()):  # anonymous, and an analyst who is no operator
        request = urllib.request.Request(consortium["b"].feed_url + "metrics", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 404
    connected = next(f for f in text_string_to_metric_families(text) if f.name == "xmppbridge_connected")
    assert connected.samples[0].value == 1


async def test_a_notification_from_a_person_is_not_mirrored(chat_consortium: Running) -> None:
    """Anyone can send the bridge a message shaped like a pubsub notification, here with a document A
    really signed: it is kept in the quarantine as unknown-source, never mirrored."""
    from contextlib import closing

    from xmppbridge.paths.publish import prepare
    from xmppbridge.signing.keys import load_identity
    from xmppbridge.store import Store

    consortium, accounts = chat_consortium
    a = consortium["a"]
    identity = load_identity(a.workdir / "keys/a.key", a.workdir / "keys/a.crt")
    [item] = prepare(iodef2("SPOOFED-1"), prefix="iodef", identity=identity, max_bytes=400_000)
    async with signed_in(accounts["guest@b.test"]) as client:
        client.send_raw(f"<message to='bridge.b.test'><event xmlns='http://jabber.org/protocol/pubsub#event'>"
                        f"<items node='{item.node}'><item id='{item.item_id}'>{item.xml.decode()}</item>"
                        f"</items></event></message>")

        def kept() -> Any:
            with closing(Store(consortium["b"].workdir / "data" / "b.sqlite")) as store:
                return [r for r in store.rejects(limit=1000) if r.item_id == item.item_id]

        [record] = await asyncio.to_thread(eventually, kept, what="the spoofed item quarantined at B")
    assert (record.reason, record.service) == ("unknown-source", "guest@b.test")
    with closing(Store(consortium["b"].workdir / "data" / "b.sqlite")) as store:
        assert not [e for e in store.entries(limit=100_000) if e.incident.id == "SPOOFED-1"]


async def test_a_chat_client_sees_the_bridge_online_and_stays_subscribed(chat_consortium: Running) -> None:
    """A person adds the bridge as a contact: the bridge accepts and shows itself online, and when the
    person signs in again their server's probe gets the presence, not an ``unsubscribed`` that would
    cancel the subscription (what slixmpp's in-memory roster answers after a restart)."""
    _, accounts = chat_consortium
    bridge = "bridge.b.test"

    def watch(client: Any) -> dict[str, asyncio.Event]:
        seen = {kind: asyncio.Event() for kind in ("available", "unsubscribed")}
        for kind, event in seen.items():
            client.add_event_handler(f"presence_{kind}",
                                     lambda p, e=event: e.set() if p["from"].bare == bridge else None)
        return seen

    async with signed_in(accounts["analyst@b.test"]) as client:
        seen = watch(client)
        client.send_presence()
        client.send_presence(pto=bridge, ptype="subscribe")
        await asyncio.wait_for(seen["available"].wait(), 20)
        assert client.client_roster.presence(bridge)  # online in the client's roster
        await client.get_roster()  # the server took the bridge's approval (RFC 6121 §3.1.6)
        assert client.client_roster[bridge]["subscription"] in ("to", "both")
    async with signed_in(accounts["analyst@b.test"]) as client:  # a new session: the server probes
        seen = watch(client)
        await client.get_roster()
        client.send_presence()
        await asyncio.wait_for(seen["available"].wait(), 20)
        await asyncio.sleep(1)  # what an in-memory roster would have sent by now
        assert not seen["unsubscribed"].is_set()
        assert client.client_roster[bridge]["subscription"] in ("to", "both")
