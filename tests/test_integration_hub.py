"""Hub and spoke on four real domains: a coordinator h relays what spoke a publishes to spokes b and c.

Every spoke follows h only; h follows the spokes and has ``relay:`` rules (public and partner to all,
need-to-know to b only, which is also the only reader of its need-to-know nodes). a publishes one
incident of each restriction. b gets the public, partner and need-to-know ones from h, each with a's
signature and h's relay signature, which the real xmlsec1 verifies one by one over the document as
each signer saw it; c, a partner reader only, gets public and partner; nobody gets the private one,
which h mirrors and refuses to relay (kept in h's quarantine). The custody chain shows in b's feed,
a restarted hub does not relay anything again, one killed around a relay relays it once, and a
retraction at a reaches the spokes through h.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from lxml import etree

from tests.integration import eventually, loopback_consortium, running
from tests.pki import XMLSEC1, xmlsec1
from tests.test_feed_support import AtomSchemas
from tests.test_integration_federation import iodef2
from xmppbridge.demo.consortium import Consortium
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.model import NS_V2
from xmppbridge.signing.shape import signature_layout
from xmppbridge.store import Store
from xmppbridge.store.entries import Entry

pytestmark = pytest.mark.integration

RESTRICTIONS = ("public", "partner", "need-to-know", "private")
HUB_SERVICE = "pubsub.h.test"
RELAY = [{"from": ["a"], "restrictions": ["public", "partner"], "to": "all"},
         {"from": ["a"], "restrictions": ["need-to-know"], "to": ["b"]}]


@pytest.fixture(scope="module")
def star(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    for tool in ("prosody", str(XMLSEC1)):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    consortium = loopback_consortium(tmp_path_factory.mktemp("hub"), {"h": 240, "a": 241, "b": 242, "c": 243},
                                     feed_port_base=18860, discovery_interval=1.0)
    consortium.write_files(
        subscriptions={"h": ["a", "b", "c"], "a": ["h"], "b": ["h"], "c": ["h"]},
        audiences={"h": {"partner": "all", "need-to-know": ["b"], "private": []},
                   "a": {"partner": ["h"], "need-to-know": ["h"], "private": ["h"]}},
        extra={"h": {"relay": RELAY}})
    with running(consortium):
        documents = []
        for restriction in RESTRICTIONS:
            path = consortium.workdir / f"{restriction}.xml"
            path.write_bytes(iodef2(f"HUB-{restriction}", restriction=restriction))
            documents.append(path)
        published = consortium.publish("a", *documents)
        assert published.returncode == 0, published.stderr
        yield consortium


def store_of(consortium: Consortium, name: str) -> Store:
    return Store(consortium[name].store)


def held(consortium: Consortium, name: str) -> dict[str, Entry]:
    """Incident id -> the entry member ``name`` mirrored from the hub."""
    with closing(store_of(consortium, name)) as store:
        return {e.incident.id: e for e in store.entries(limit=1000) if e.service == HUB_SERVICE}


def holds(consortium: Consortium, name: str, service: str, node: str, item_id: str) -> bool:
    with closing(store_of(consortium, name)) as store:
        return store.find_entry(service, node, item_id) is not None


def relayed(restrictions: tuple[str, ...]) -> set[str]:
    return {f"HUB-{r}" for r in restrictions}


def test_each_spoke_gets_what_its_audience_may_read_through_the_hub(star: Consortium) -> None:
    at_b = eventually(lambda: (h := held(star, "b")).keys() >= relayed(RESTRICTIONS[:3]) and h,
                      timeout=90, what="b to hold the public, partner and need-to-know incidents from h")
    at_c = eventually(lambda: (h := held(star, "c")).keys() >= relayed(RESTRICTIONS[:2]) and h,
                      timeout=60, what="c to hold the public and partner incidents from h")
    # c reads h's partner nodes but not its need-to-know ones, and the private incident goes nowhere.
    assert at_b.keys() == relayed(RESTRICTIONS[:3]) and at_c.keys() == relayed(RESTRICTIONS[:2])
    for entry in (*at_b.values(), *at_c.values()):
        restriction = entry.incident.id.removeprefix("HUB-")
        # Never wider: h published it on the node of its own restriction, and it is filed under it.
        assert entry.node == f"iodef/{restriction}/mitigation" and entry.restriction == restriction
        # The originator is a, whom the spoke trusts on a's signature; h only relayed it.
        assert entry.signer_subject.startswith("CN=CSIRT A ")
        assert [(c.role, c.member) for c in entry.custody] == [("originator", "a"), ("relay", "h")]
        assert all(c.at is not None for c in entry.custody)
    # h holds a's private incident (its own catch-up of that node, not what b's copies came through) and
    # refused to relay it.
    private = ("pubsub.a.test", "iodef/private/mitigation", "csirt.a.test/HUB-private")
    eventually(lambda: holds(star, "h", *private), timeout=60, what="h to hold a's private incident")
    with closing(store_of(star, "h")) as store:
        [refused] = store.rejects()  # the private incident, and nothing else
        assert (refused.source, refused.reason) == ("relay", "relay-refused")
    for spoke in "abc":  # a's own incidents came back relayed and were passed over, not quarantined
        with closing(store_of(star, spoke)) as store:
            assert store.count_rejects() == 0, store.rejects()


def test_xmlsec1_verifies_the_custody_chain_signature_by_signature(star: Consortium, tmp_path: Path) -> None:
    entries = eventually(lambda: (h := held(star, "b")).keys() >= relayed(RESTRICTIONS[:3]) and h,
                         timeout=90, what="b to hold the relayed incidents")
    keys = star.workdir / "keys"
    for incident_id, entry in entries.items():
        root = etree.fromstring(entry.xml)
        layout = signature_layout(root, NS_V2)
        assert len(layout.relays) == 1
        # The relay's signature covers the document as relayed, the originator's signature included.
        path = tmp_path / f"{incident_id}.relayed.xml"
        path.write_bytes(entry.xml)
        result = xmlsec1("--verify", "--trusted-pem", keys / "h.crt",
                         "--node-xpath", "(//*[local-name()='Signature'])[2]", path)
        assert result.returncode == 0, result.stderr
        # The originator's covers the document without the relay's AdditionalData.
        holder = layout.relays[0].getparent()
        holder.getparent().remove(holder)
        path = tmp_path / f"{incident_id}.original.xml"
        path.write_bytes(etree.tostring(root))
        result = xmlsec1("--verify", "--trusted-pem", keys / "a.crt", path)
        assert result.returncode == 0, result.stderr
        # And neither verifies as the other's.
        assert xmlsec1("--verify", "--trusted-pem", keys / "h.crt", path).returncode != 0


def test_the_custody_chain_shows_in_the_spokes_feed(star: Consortium, schemas: AtomSchemas) -> None:
    entry = eventually(lambda: held(star, "b").get("HUB-partner"), timeout=90, what="b to hold HUB-partner")
    b = star["b"]
    urls = FeedUrls(b.feed_url)
    request = urllib.request.Request(urls.feed("partner"), headers=b.basic_auth())
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    schemas.check_atom(body)  # RFC 4287 and RFC 8322's RELAX NG: rolie:property as ROLIE has it
    feed = body.decode()
    assert 'name="urn:xmppbridge:property:custody" value="originator CN=CSIRT A ' in feed
    assert 'value="relay CN=CSIRT H ' in feed and "relayed by CN=CSIRT H " in feed
    request = urllib.request.Request(urls.entry(entry.id), headers={**b.basic_auth(), "Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:
        page = response.read().decode()
    assert "<th>Custody</th>" in page and "<li>relay CN=CSIRT H " in page


def test_a_restarted_hub_relays_nothing_again(star: Consortium) -> None:
    eventually(lambda: held(star, "b").keys() >= relayed(RESTRICTIONS[:3]), timeout=90,
               what="b to hold the relayed incidents")

    def relays() -> list[str]:
        with closing(store_of(star, "h")) as store:
            rows = store.sql("SELECT item_id FROM outbox WHERE source LIKE 'relay:%'")
            return sorted(row[0] for row in rows)

    before = relays()
    assert before == sorted(f"csirt.a.test/HUB-{r}" for r in RESTRICTIONS[:3])
    star.stop_bridge("h")
    star.start_bridge("h", 120)  # caught up with a again: every item fetched anew, none relayed anew
    assert relays() == before
    assert all(e.revision == 1 for e in held(star, "b").values())


def test_a_hub_killed_around_a_relay_relays_it_once_after_its_restart(star: Consortium) -> None:
    """Killed as the item arrives: before it stored it (the catch-up fetches it), between storing and
    publishing (the outbox still holds the relay, committed with the entry), or after (nothing to do).
    Wherever the kill falls, b gets the item once."""
    path = star.workdir / "crash.xml"
    path.write_bytes(iodef2("HUB-crash", restriction="partner"))
    published = star.publish("a", path)
    assert published.returncode == 0, published.stderr
    star.stop_bridge("h", kill=True)
    star.start_bridge("h", 120)
    entry = eventually(lambda: held(star, "b").get("HUB-crash"), timeout=90, what="b to hold HUB-crash")
    assert entry.revision == 1 and [c.member for c in entry.custody] == ["a", "h"]
    with closing(store_of(star, "h")) as store:
        assert len(store.sql("SELECT id FROM outbox WHERE item_id = ?", ("csirt.a.test/HUB-crash",))) == 1


def test_a_retraction_at_the_originator_reaches_the_spokes_through_the_hub(star: Consortium) -> None:
    eventually(lambda: "HUB-partner" in held(star, "c"), timeout=90, what="c to hold HUB-partner")
    with closing(store_of(star, "a")) as store:
        [own] = [e for e in store.entries(limit=100) if e.incident.id == "HUB-partner"]
    a = star["a"]
    request = urllib.request.Request(FeedUrls(a.feed_url).entry(own.id), method="DELETE",
                                     headers=a.basic_auth())
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 204
    for spoke in "bc":
        eventually(lambda spoke=spoke: "HUB-partner" not in held(star, spoke), timeout=60,
                   what=f"{spoke} to drop HUB-partner, retracted by a and then by h")
    assert "HUB-public" in held(star, "c")  # nothing else went
