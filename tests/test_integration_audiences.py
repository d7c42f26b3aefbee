"""Who reads what at the source, on three real domains: the access matrix, and removal on SIGHUP.

a publishes through its real bridge, on Prosody and then on ejabberd; b and c run Prosody. b is in a's
need-to-know audience, c a partner only, and eve is a person on b's domain. b and c are played by probe
components connected as their bridges' JIDs, so that every subscribe, items request and notification is
seen as the service answers it; eve is a client. Then b is removed from need-to-know in a's config file
and a's bridge gets SIGHUP: within that one reconcile b's subscription is cancelled, its requests
refused, and it hears nothing more of the node.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from slixmpp import ClientXMPP, ComponentXMPP
from slixmpp.exceptions import IqError, IqTimeout

from tests.integration import loopback_consortium
from tests.test_integration_federation import iodef2
from xmppbridge.config.settings import load_config
from xmppbridge.demo.accounts import Account, ProsodyAccounts, create_accounts
from xmppbridge.demo.consortium import Consortium
from xmppbridge.demo.ejabberd import EjabberdServer
from xmppbridge.demo.prosody import ProsodyServer
from xmppbridge.paths.publish import Publisher
from xmppbridge.store import Store
from xmppbridge.xmpp.stanzas import subscriptions_of

pytestmark = pytest.mark.integration

SERVICE = "pubsub.a.test"
RESTRICTIONS = ("public", "partner", "need-to-know", "private")
AUDIENCES = {"partner": "all", "need-to-know": ["b"], "private": []}
AFTER = {"partner": ["c"], "need-to-know": ["c"], "private": []}  # b removed from both
Running = tuple[Consortium, Account]
# How a whitelist node refuses an outcast's subscribe and items requests: Prosody's util/pubsub.lua says
# forbidden; ejabberd not-allowed with <closed-node/>, as XEP-0060 has it ("not on whitelist", §6.1.3.4,
# §6.5.9).
# A non-member's items request: an outcast of Prosody's whitelist node, or a stranger to ejabberd's
# authorize node (approval auto). Its subscribe request: refused, or held for the operator (the matrix
# counts "pending" as no access); asked again while held, ejabberd answers not-authorized +
# pending-subscription (XEP-0060 §6.1.3.7).
REFUSED = {ProsodyServer: "forbidden", EjabberdServer: "forbidden"}
HELD_AGAIN = {ProsodyServer: "forbidden", EjabberdServer: "not-authorized"}


@pytest.fixture(scope="module", params=["prosody", "ejabberd"])
def three(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """a on Prosody, then on ejabberd; b and c on Prosody."""
    for tool in ("prosody", *(["ejabberdctl"] if request.param == "ejabberd" else [])):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    consortium = loopback_consortium(tmp_path_factory.mktemp("audiences"), {"a": 102, "b": 103, "c": 104},
                                     feed_port_base=18521, discovery_interval=1.0)
    if request.param == "ejabberd":
        server = consortium["a"].prosody
        consortium["a"].prosody = EjabberdServer(server.domain, server.ip, server.workdir,  # type: ignore[assignment]
                                                 server.secret, peers=server.peers)
    consortium.write_files(audiences={"a": AUDIENCES})
    # Only the SIGHUP round may do what the removal test sees: the periodic one is an hour away.
    edit_config(consortium, lambda config: config["pubsub"].update(reconcile_interval=3600))
    try:
        consortium.start_servers()
        [eve] = create_accounts(ProsodyAccounts(consortium["b"].prosody), ["eve"])
        consortium.start_bridge("a", 60)  # b and c are the probes below
        yield consortium, eve
    finally:
        consortium.stop()


def edit_config(consortium: Consortium, change: Callable[[dict[str, Any]], None]) -> None:
    path = consortium["a"].config_path
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def node(restriction: str) -> str:
    return f"iodef/{restriction}/mitigation"


class Probe:
    """One XMPP entity asking a's service: its answers and the notifications it gets."""

    def __init__(self, name: str, xmpp: ComponentXMPP | ClientXMPP) -> None:
        self.name, self.xmpp = name, xmpp
        self.notified: list[tuple[str, str]] = []  # (node, item id)
        for plugin in ("xep_0030", "xep_0060"):
            xmpp.register_plugin(plugin)
        xmpp.add_event_handler("pubsub_publish", self._on_publish)

    @property
    def me(self) -> str:
        return self.xmpp.boundjid.bare

    def _on_publish(self, message: Any) -> None:
        item = message["pubsub_event"]["items"]
        self.notified.append((item["node"], item["item"]["id"]))

    async def ask(self, request: Callable[..., Awaitable[Any]], *args: Any) -> str:
        """"ok" or the error condition of one request to a's service."""
        try:
            await request(SERVICE, *args, ifrom=self.me, timeout=20)
        except IqError as exc:
            return exc.condition
        except IqTimeout:
            return "timeout"
        return "ok"

    async def subscribe(self, node: str) -> str:
        """"ok", or the error condition; on an ``authorize`` node (ejabberd, approval auto) a request is
        ``pending`` first: it counts once the publisher's bridge has let it in (its audience), and a
        request held for the operator is no access (no items, no notifications)."""
        state: dict[str, str] = {}

        async def request(*args: Any, **kwargs: Any) -> None:
            reply = await self.xmpp.plugin["xep_0060"].subscribe(*args, **kwargs)
            state["subscription"] = reply["pubsub"]["subscription"]["subscription"]

        answer = await self.ask(request, node)
        if answer != "ok" or state.get("subscription") != "pending":
            return answer
        deadline = asyncio.get_running_loop().time() + 3
        while asyncio.get_running_loop().time() < deadline:
            if await self.subscribed(node):
                return "ok"
            await asyncio.sleep(0.2)
        return "pending"

    async def items(self, node: str) -> str:
        return await self.ask(self.xmpp.plugin["xep_0060"].get_items, node)

    async def subscribed(self, node: str) -> bool:
        """Whether the service lists a subscription of ours to ``node`` (XEP-0060 §5.6)."""
        reply = await self.xmpp.plugin["xep_0060"].get_subscriptions(SERVICE, node, ifrom=self.me, timeout=20)
        return any(s["subscription"] == "subscribed" for s in reply["pubsub"]["subscriptions"])

    async def listed(self) -> dict[str, str]:
        """All our subscriptions on a's service in one request, read as a bridge's renewal round reads
        them (``subscriptions_of``, XEP-0060 §5.6)."""
        reply = await self.xmpp.plugin["xep_0060"].get_subscriptions(SERVICE, ifrom=self.me, timeout=20)
        return subscriptions_of(reply.xml, self.me)


@asynccontextmanager
async def probes(consortium: Consortium, eve: Account) -> AsyncIterator[dict[str, Probe]]:
    """b's and c's bridges (components) and eve@b.test (a client), connected."""
    found = {}
    for name in ("b", "c"):
        member = consortium[name]
        found[name] = Probe(name, ComponentXMPP(member.bridge_jid, consortium.secret, member.ip,
                                                member.prosody.component_port, fix_error_ns=True))
    client = ClientXMPP(eve.jid, eve.password)
    client.plugin["feature_mechanisms"].unencrypted_plain = False
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = 0
    # Available (RFC 6121 §4.2): messages to the bare JID, as notifications are, reach her session.
    client.add_event_handler("session_start", lambda _: client.send_presence())
    found["eve"] = Probe("eve", client)
    started = {name: asyncio.Event() for name in found}
    for name, probe in found.items():
        probe.xmpp.add_event_handler("session_start", lambda _, e=started[name]: e.set())
        if name == "eve":
            probe.xmpp.connect(host=eve.host, port=eve.port)
        else:
            probe.xmpp.connect()
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 30)
        yield found
    finally:
        for probe in found.values():
            probe.xmpp.disconnect()


async def publish(consortium: Consortium, tmp_path: Path, incident_id: str, restriction: str) -> None:
    document = tmp_path / f"{incident_id}.xml"
    document.write_bytes(iodef2(incident_id, restriction=restriction))
    result = await asyncio.to_thread(consortium.publish, "a", document)
    assert result.returncode == 0, result.stderr
    assert f"published to {node(restriction)} on {SERVICE}" in result.stdout


async def soon(probe: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


async def heard_up_to(probes: dict[str, Probe], consortium: Consortium, tmp_path: Path, sentinel: str,
                      who: tuple[str, ...]) -> None:
    """Publish a public item last and wait until ``who`` heard it: a service notifies one JID in publish
    order over one s2s stream, so whatever was published earlier and not heard by now never comes."""
    await publish(consortium, tmp_path, sentinel, "public")
    item = f"csirt.a.test/{sentinel}"
    for name in who:
        await soon(lambda p=probes[name]: (node("public"), item) in p.notified, f"{name} to hear {sentinel}")


def item_ids(probe: Probe, restriction: str) -> set[str]:
    return {item for n, item in probe.notified if n == node(restriction)}


Matrix = dict[tuple[str, str, str], bool]  # (actor, restriction, subscribe|items|notified) -> it worked


async def requests(actors: dict[str, Probe], names: tuple[str, ...]) -> Matrix:
    """Each actor subscribes to and asks for the items of every restriction's node."""
    found: Matrix = {}
    for name in names:
        for restriction in RESTRICTIONS:
            found[name, restriction, "subscribe"] = await actors[name].subscribe(node(restriction)) == "ok"
            found[name, restriction, "items"] = await actors[name].items(node(restriction)) == "ok"
    return found


def notified(actors: dict[str, Probe], names: tuple[str, ...], round_: int) -> Matrix:
    """Who heard round ``round_``'s item of each restriction (published before a ``heard_up_to``)."""
    return {(name, restriction, "notified"):
            f"csirt.a.test/INC-{restriction}-{round_}" in item_ids(actors[name], restriction)
            for name in names for restriction in RESTRICTIONS}


def wrong(observed: Matrix, audiences: dict[str, object]) -> tuple[list[tuple[str, str, str]], ...]:
    """(leaks: allowed but not in the audience, missing: in the audience but refused)."""
    want = {key: expected(key[0], key[1], audiences) for key in observed}
    return (sorted(k for k, ok in observed.items() if ok and not want[k]),
            sorted(k for k, ok in observed.items() if want[k] and not ok))


def expected(actor: str, restriction: str, audiences: dict[str, object]) -> bool:
    """The policy, written out: public is open; other nodes are read by the members named (bridges)."""
    if restriction == "public":
        return True
    readers = audiences.get(restriction, [])
    return actor != "eve" and (readers == "all" or actor in readers)  # type: ignore[operator]


async def test_the_access_matrix_then_removal_on_sighup(three: Running, tmp_path: Path) -> None:
    consortium, eve = three
    for restriction in RESTRICTIONS[:3]:  # private: [] is nobody's, so nothing is published there
        await publish(consortium, tmp_path, f"INC-{restriction}-1", restriction)
    async with probes(consortium, eve) as actors:
        everyone = ("b", "c", "eve")
        observed = await requests(actors, everyone)
        for restriction in RESTRICTIONS[:3]:
            await publish(consortium, tmp_path, f"INC-{restriction}-2", restriction)
        await heard_up_to(actors, consortium, tmp_path, "SENTINEL-1", everyone)
        observed |= notified(actors, everyone, 2)
        assert wrong(observed, AUDIENCES) == ([], [])  # (leaks, missing)
        # What the refusals are: outcasts of a whitelist node, or no node at all for private.
        refused = REFUSED[type(consortium["a"].prosody)]
        assert await actors["c"].items(node("need-to-know")) == refused
        assert await actors["eve"].subscribe(node("partner")) == HELD_AGAIN[type(consortium["a"].prosody)]
        assert await actors["b"].items(node("private")) == "item-not-found"

        # b leaves partner and need-to-know; c joins need-to-know, so that every node keeps a reader who
        # proves that items still flow.
        b, c = actors["b"], actors["c"]
        assert await b.subscribed(node("partner")) and await b.subscribed(node("need-to-know"))
        # What a renewal round reads: one answer lists every node, as each node's own listing has it.
        assert {n for n, s in (await b.listed()).items() if s == "subscribed"} == {
            node(restriction) for restriction in RESTRICTIONS[:3]}
        log_start = consortium.log_path("a").stat().st_size
        edit_config(consortium, lambda config: config["audiences"].update(AFTER))
        consortium["a"].bridge.send_signal(signal.SIGHUP)
        done = f"reconciled 3 nodes on {SERVICE} (reload)\n"  # the round's last line
        await soon(lambda: done in log_since(consortium, log_start), "the reload's reconcile round")
        log = log_since(consortium, log_start)
        for restriction in ("partner", "need-to-know"):
            why = f"iodef/{restriction}/mitigation: not in audience {restriction}/mitigation (reload)"
            assert f"audit: cancelled the subscription of bridge.b.test (member b) to {why}" in log
            assert f"audit: removed bridge.b.test (member b) from {why}" in log
        assert ("audit: added bridge.c.test (member c) to iodef/need-to-know/mitigation: in audience "
                "need-to-know/mitigation (reload)") in log
        # The reconcile's five; on ejabberd the approval desk also lets c's held requests in.
        changes = [line for line in log.splitlines() if "audit: " in line and "audit: approval" not in line]
        assert len(changes) == 5 and "needs a restart" not in log

        # The removed member's row of the matrix, and c's under the new audiences.
        assert not await b.subscribed(node("partner")) and not await b.subscribed(node("need-to-know"))
        assert {n for n, s in (await b.listed()).items() if s == "subscribed"} == {node("public")}
        assert await b.items(node("need-to-know")) == refused
        # On ejabberd c's earlier request was held; joining the audience lets it in (the reload asks for
        # the pending requests again), so it ends up subscribed either way.
        for _ in range(40):
            if await c.subscribe(node("need-to-know")) == "ok" or await c.subscribed(node("need-to-know")):
                break
            await asyncio.sleep(0.25)
        assert await c.subscribed(node("need-to-know"))
        after = await requests(actors, ("b", "c"))
        for restriction in RESTRICTIONS[:3]:
            await publish(consortium, tmp_path, f"INC-{restriction}-3", restriction)
        await heard_up_to(actors, consortium, tmp_path, "SENTINEL-2", ("b", "c"))
        after |= notified(actors, ("b", "c"), 3)
        assert wrong(after, AFTER) == ([], [])
        assert await b.subscribe(node("partner")) == HELD_AGAIN[type(consortium["a"].prosody)]
        changes = metric_samples(consortium, "xmppbridge_affiliation_changes_total")
        assert changes == {"added": 1.0, "removed": 2.0, "subscription-cancelled": 2.0}


async def test_a_bad_config_is_refused_on_reload_and_the_running_one_kept(three: Running) -> None:
    consortium, _ = three
    path = consortium["a"].config_path
    good = path.read_text()
    log_start = consortium.log_path("a").stat().st_size
    edit_config(consortium, lambda config: config["audiences"].update({"need-to-know": ["nobody-we-know"]}))
    try:
        consortium["a"].bridge.send_signal(signal.SIGHUP)
        await soon(lambda: "keeping the running config" in log_since(consortium, log_start), "the refusal")
        assert "audiences: need-to-know: nobody-we-know is not a member" in log_since(consortium, log_start)
        assert consortium.health("a").get("ready") and consortium["a"].bridge.poll() is None
    finally:
        path.write_text(good)


async def test_a_reload_while_items_are_queued_loses_none(three: Running) -> None:
    """a's server is down while 60 items are queued and the audiences change on SIGHUP; once it is back,
    every item goes out."""
    consortium, _ = three
    a = consortium["a"]
    a.prosody.stop()
    await soon(lambda: consortium.health("a").get("connected") is False, "a's bridge to see its server gone")
    with closing(Store(a.store_path)) as store:
        publisher = Publisher.for_config(store, load_config(a.config_path))
        queued = [accepted.outbox_id for i in range(60) for accepted in publisher.enqueue(
            publisher.prepare(iodef2(f"INC-QUEUED-{i}", restriction="partner")), source="test")]
    log_start = consortium.log_path("a").stat().st_size
    edit_config(consortium, lambda config: config["audiences"].update({"partner": ["b"]}))
    a.bridge.send_signal(signal.SIGHUP)
    await soon(lambda: "audiences and member registry applied" in log_since(consortium, log_start),
               "the reload")
    with closing(Store(a.store_path)) as store:
        assert store.outbox_depth() >= len(queued)  # nothing went out meanwhile, nothing was dropped
    a.prosody.start()

    def all_out() -> bool:
        with closing(Store(a.store_path)) as store:
            return all(store.outbox_item(i).status == "published" for i in queued)  # type: ignore[union-attr]
    await soon(all_out, "every queued item published", timeout=60)
    assert a.bridge.poll() is None


def log_since(consortium: Consortium, offset: int) -> str:
    with open(consortium.log_path("a"), "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def metric_samples(consortium: Consortium, name: str) -> dict[str, float]:
    with urllib.request.urlopen(consortium["a"].metrics_url + "metrics", timeout=10) as response:
        text = response.read().decode()
    return {sample.labels["change"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name}


@pytest.mark.parametrize("three", ["prosody"], indirect=True)  # c runs Prosody whatever a runs
async def test_prosody_keeps_the_subscription_of_a_member_removed_while_subscribed(three: Running) -> None:
    """Why reconcile cancels a leaver's subscriptions before it removes the affiliation: Prosody 0.12
    answers such a removal ``forbidden`` after storing it (util/pubsub.lua ``set_affiliation``), and the
    subscription stays. Played on c's own service (Prosody), which c's probe owns."""
    consortium, eve = three
    service, quirk = "pubsub.c.test", "quirk"
    async with probes(consortium, eve) as actors:
        owner, b = actors["c"], actors["b"]
        pubsub = owner.xmpp.plugin["xep_0060"]
        form = owner.xmpp.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="pubsub#access_model", value="whitelist")
        await pubsub.create_node(service, quirk, config=form, ifrom=owner.me, timeout=20)
        await pubsub.modify_affiliations(service, quirk, [(b.me, "member")], ifrom=owner.me, timeout=20)
        await b.xmpp.plugin["xep_0060"].subscribe(service, quirk, ifrom=b.me, timeout=20)
        with pytest.raises(IqError) as refused:
            await pubsub.modify_affiliations(service, quirk, [(b.me, "none")], ifrom=owner.me, timeout=20)
        assert refused.value.condition == "forbidden"
        affiliations = await pubsub.get_node_affiliations(service, quirk, ifrom=owner.me, timeout=20)
        assert b.me not in {a["jid"].bare for a in affiliations["pubsub_owner"]["affiliations"]}
        subscriptions = await pubsub.get_node_subscriptions(service, quirk, ifrom=owner.me, timeout=20)
        assert b.me in {s["jid"].bare for s in subscriptions["pubsub_owner"]["subscriptions"]}
