"""AtomPub writes in process: POST, PUT, DELETE through the real Publisher and outbox, with a stand-in
for the XMPP drain (the federation tests run the real one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient
from lxml import etree
from slixmpp import Iq
from slixmpp.exceptions import IqError

from tests.pki import DAY, NOW, identity_valid_between
from tests.test_feed_support import (
    ANALYST,
    APP,
    AT,
    BASE,
    MEMBER,
    MITIGATOR,
    NS,
    SERVICE,
    AtomSchemas,
    client_for,
    iodef2,
    link,
    path_of,
    store_document,
)
from xmppbridge.paths.publish import Publisher
from xmppbridge.policy.audiences import OPEN
from xmppbridge.signing.keys import generate_identity_files
from xmppbridge.store import OutboxItem, Store
from xmppbridge.store.items import SignedItem
from xmppbridge.xmpp.outbox import OutboxDrain

XML = {"Content-Type": "application/xml"}
HOLD = "(no answer)"


@dataclass
class World:
    client: TestClient
    store: Store
    drained: list[OutboxItem]
    drain: Callable[[OutboxItem], str | None]  # the stand-in XMPP server: None = published, HOLD = no answer


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    # subjectAltName: the IncidentID domain of the documents (test_feed_support.iodef2) it publishes.
    identity = generate_identity_files("CSIRT A", tmp_path / "a.key", tmp_path / "a.crt",
                                       domains=("example.org",))
    with Store(tmp_path / "a.sqlite") as store:
        publisher = Publisher(store, identity, prefix="iodef", max_bytes=400_000, service=SERVICE)
        publisher.POLL = 0.01
        client = await client_for(store, publisher=publisher, write_timeout=2.0)
        world = World(client, store, [], lambda item: None)

        async def drain() -> None:  # the outbox drain's contract, without XMPP
            while True:
                for item in store.pending():
                    refusal = world.drain(item)
                    if refusal == HOLD:
                        continue
                    world.drained.append(item)
                    if refusal is None:
                        store.mark_published(item.id, service=SERVICE)
                    else:
                        store.mark_failed(item.id, refusal)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(drain())
        yield world
        task.cancel()
        await client.close()


async def post(
    world: World,
    restriction: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    who: dict[str, str] | None = None,
) -> tuple[int, str, Mapping[str, str]]:
    response = await world.client.post(
        f"/feeds/{restriction}",
        data=body,
        headers={**XML, **(headers or {}), **(ANALYST.headers if who is None else who)},
    )
    return response.status, await response.text(), response.headers


async def test_post_publishes_and_answers_201(world: World, schemas: AtomSchemas) -> None:
    status, body, headers = await post(world, "need-to-know", iodef2("W-1", restriction="amber"))
    assert status == 201, body
    location = headers["Location"]
    assert location.startswith(BASE + "entries/") and headers["Content-Location"] == location
    doc = schemas.check_atom(body.encode())
    assert link(doc, "self") == location and link(doc, "edit") == location
    assert (
        headers["ETag"]
        == (await world.client.get(path_of(location), headers=ANALYST.headers)).headers["ETag"]
    )
    [item] = world.drained
    assert (item.node, item.item_id, item.action) == (
        "iodef/need-to-know/mitigation",
        "csirt.example.org/W-1",
        "publish",
    )
    assert b"<Signature" in item.payload  # signed by the bridge on the way out
    feed = await (await world.client.get("/feeds/need-to-know", headers=ANALYST.headers)).text()
    assert location in feed
    assert item.source == "http:analyst"


async def test_post_an_atom_entry_carrying_the_document(world: World) -> None:
    document = iodef2("W-2").split(b"?>", 1)[1]
    entry = (
        b'<entry xmlns="http://www.w3.org/2005/Atom"><title>x</title><content type="application/xml">'
        + document
        + b"</content></entry>"
    )
    status, body, _ = await post(world, "public", entry, {"Content-Type": "application/atom+xml;type=entry"})
    assert status == 201, body
    assert world.store.find_entry(SERVICE, "iodef/public/mitigation", "csirt.example.org/W-2") is not None
    status, body, _ = await post(
        world,
        "public",
        b'<entry xmlns="http://www.w3.org/2005/Atom"><content/></entry>',
        {"Content-Type": "application/atom+xml"},
    )
    assert status == 400 and body.startswith("no-inline-document:")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json", "application/atom+xml;type=feed", "application/octet-stream"],
)
async def test_wrong_media_type_is_415(world: World, content_type: str) -> None:
    status, _, _ = await post(world, "public", iodef2("W-3"), {"Content-Type": content_type})
    assert status == 415 and world.drained == []


async def test_invalid_documents_are_400_with_the_validators_errors(world: World) -> None:
    status, body, _ = await post(
        world,
        "public",
        iodef2("W-4")
        .replace(b"<GenerationTime>", b"<Generated>")
        .replace(b"</GenerationTime>", b"</Generated>"),
    )
    assert status == 400
    first, *details = body.strip().splitlines()
    assert first.startswith("schema-invalid: not a valid IODEF 2.0 document")
    assert details and all(line.startswith("line ") for line in details)
    assert (await post(world, "public", b"<not xml"))[0] == 400
    assert (await post(world, "public", b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'))[1].startswith("doctype")
    assert world.drained == []


async def test_a_document_is_never_published_to_another_audience(world: World) -> None:
    status, body, _ = await post(world, "public", iodef2("W-5", restriction="need-to-know"))
    assert status == 400 and body.startswith("wrong-collection:") and "feeds/need-to-know" in body
    mixed = iodef2("W-6").replace(
        b"</Incident>", b'<AdditionalData dtype="string" restriction="private">x</AdditionalData></Incident>'
    )
    status, body, _ = await post(world, "public", mixed)  # a public Incident with a private part
    assert status == 400 and body.startswith("wrong-collection: incident W-6 is private"), body
    assert world.drained == []


async def test_an_incident_id_this_member_does_not_speak_for_is_400_with_the_reason(world: World) -> None:
    """Every peer would quarantine it (domain-not-allowed): refused before anything is queued."""
    status, body, _ = await post(world, "public", iodef2("W-F", name="csirt.b.test"))
    assert status == 400 and body.startswith("domain-not-allowed: IncidentID name 'csirt.b.test'"), body
    assert "speaks for example.org" in body and "signing.domains" in body
    assert world.drained == [] and world.store.outbox_depth() == 0


async def test_a_signing_certificate_peers_refuse_is_503(tmp_path: Path) -> None:
    """The server's certificate expired while it ran: not the client's fault, so not a 4xx."""
    expired = identity_valid_between("ec", NOW - 60 * DAY, days=30)
    with Store(tmp_path / "a.sqlite") as store:
        publisher = Publisher(store, expired, prefix="iodef", max_bytes=400_000, service=SERVICE,
                              domains=("example.org",))
        client = await client_for(store, publisher=publisher)
        try:
            response = await client.post("/feeds/public", data=iodef2("W-E"),
                                         headers={**XML, **ANALYST.headers})
            body = await response.text()
        finally:
            await client.close()
        assert response.status == 503 and body.startswith("certificate-expired: "), body
        assert store.outbox_depth() == 0


async def test_post_of_an_existing_incident_is_a_conflict(world: World) -> None:
    assert (await post(world, "public", iodef2("W-7")))[0] == 201
    status, body, _ = await post(world, "public", iodef2("W-7", description="again"))
    assert status == 409 and "PUT" in body


async def test_who_may_write(world: World) -> None:
    assert (await post(world, "public", iodef2("W-8"), who={}))[0] == 401
    assert (await post(world, "public", iodef2("W-8"), who=MEMBER.headers))[0] == 403  # reads, may not write
    assert (await post(world, "private", iodef2("W-8", restriction="private"), who=MEMBER.headers))[0] == 404
    ntk = iodef2("W-8", restriction="need-to-know", purpose="watch")
    assert (await post(world, "need-to-know", ntk, who=MITIGATOR.headers))[0] == 403  # wrong purpose
    ntk = iodef2("W-8", restriction="need-to-know", purpose="mitigation")
    assert (await post(world, "need-to-know", ntk, who=MITIGATOR.headers))[0] == 201
    service = await (
        await world.client.get("/.well-known/rolie/servicedocument", headers=MITIGATOR.headers)
    ).read()
    accepts = {
        c.get("href"): [a.text for a in c.findall("app:accept", NS)]
        for c in etree.fromstring(service).iter(f"{{{APP}}}collection")
    }
    assert accepts[BASE + "feeds/need-to-know"] == [
        "application/xml",
        "text/xml",
        "application/atom+xml;type=entry",
    ]
    assert accepts[BASE + "feeds/public"] == [None]


async def test_put_publishes_a_new_version_and_keeps_history(world: World, schemas: AtomSchemas) -> None:
    _, _, created = await post(world, "partner", iodef2("W-9", restriction="partner", description="first"))
    location, etag = path_of(created["Location"]), created["ETag"]
    replaced = iodef2("W-9", restriction="partner", description="second")
    response = await world.client.put(
        location, data=replaced, headers={**XML, **ANALYST.headers, "If-Match": etag}
    )
    assert response.status == 200, await response.text()
    doc = schemas.check_atom(await response.read())
    assert doc.findtext("atom:title", namespaces=NS) == "second"
    assert response.headers["ETag"] != etag
    stale = await world.client.put(
        location, data=replaced, headers={**XML, **ANALYST.headers, "If-Match": etag}
    )
    assert stale.status == 412
    history = etree.fromstring(
        await (await world.client.get(location + "/history", headers=ANALYST.headers)).read()
    )
    assert [e.findtext("atom:title", namespaces=NS) for e in history.findall("atom:entry", NS)] == [
        "second",
        "first",
    ]
    other = iodef2("W-10", restriction="partner")
    assert (await world.client.put(location, data=other, headers={**XML, **ANALYST.headers})).status == 400
    assert (
        await world.client.put(location, data=b"x", headers={"Content-Type": "text/plain", **ANALYST.headers})
    ).status == 415


async def test_mirrored_entries_belong_to_their_publisher(world: World) -> None:
    mirrored = store_document(world.store, iodef2("REMOTE-1"), service="pubsub.b.test")
    for method in ("PUT", "DELETE"):
        response = await world.client.request(
            method, f"/entries/{mirrored.id}", data=iodef2("REMOTE-1"), headers={**XML, **ANALYST.headers}
        )
        assert response.status == 405 and response.headers["Allow"] == "GET,HEAD"


async def test_delete_retracts_and_leaves_a_tombstone(world: World) -> None:
    _, _, created = await post(world, "public", iodef2("W-11"))
    location = path_of(created["Location"])
    assert (
        await world.client.delete(location, headers={**ANALYST.headers, "If-Match": '"stale"'})
    ).status == 412
    assert (await world.client.delete(location, headers=MEMBER.headers)).status == 403
    response = await world.client.delete(location, headers=ANALYST.headers)
    assert response.status == 204
    assert world.drained[-1].action == "retract" and world.drained[-1].item_id == "csirt.example.org/W-11"
    assert (await world.client.get(location, headers=ANALYST.headers)).status == 410
    feed = etree.fromstring(await (await world.client.get("/feeds/public")).read())
    assert [t.get("ref") for t in feed.findall(f"{{{AT}}}deleted-entry")] == [
        "tag:csirt.example.org,2024:W-11"
    ]
    # POSTing it again brings it back
    assert (await post(world, "public", iodef2("W-11")))[0] == 201


async def test_refusals_and_delays_of_the_xmpp_side(world: World) -> None:
    world.drain = lambda item: "forbidden: not a publisher"
    status, body, _ = await post(world, "public", iodef2("W-12"))
    assert status == 502 and "forbidden" in body
    world.drain = lambda item: HOLD
    status, body, _ = await post(world, "public", iodef2("W-13"))
    assert status == 202 and "queued" in body


async def test_a_split_document_makes_several_entries(world: World) -> None:
    two = iodef2("W-14").replace(
        b"</IODEF-Document>",
        iodef2("W-15", purpose="watch")
        .split(b"?>", 1)[1]
        .split(b">", 1)[1]
        .replace(b"</IODEF-Document>\n", b"")
        + b"</IODEF-Document>",
    )
    response = await world.client.post("/feeds/public", data=two, headers={**XML, **ANALYST.headers})
    assert response.status == 201, await response.text()
    assert len(response.headers.getall("Link")) == 1
    assert {i.node for i in world.drained} == {"iodef/public/mitigation", "iodef/public/watch"}


# -- the drain's retraction ----------------------------------------------------------------------------


class FakeXmpp:
    """What OutboxDrain needs of BridgeComponent for retractions."""

    def __init__(self, condition: str | None = None) -> None:
        self.online = asyncio.Event()
        self.online.set()
        self.condition = condition
        self.retracted: list[tuple[str, str, str]] = []

    async def retract(self, service: str, node: str, item_id: str) -> None:
        self.retracted.append((service, node, item_id))
        if self.condition is not None:
            iq = Iq()
            iq["type"] = "error"
            iq["error"]["condition"] = self.condition
            raise IqError(iq)


@pytest.mark.parametrize(
    ("condition", "status"), [(None, "published"), ("item-not-found", "published"), ("forbidden", "failed")]
)
async def test_the_drain_retracts(tmp_path: Path, condition: str | None, status: str) -> None:
    with Store(tmp_path / "drain.sqlite") as store:
        entry = store_document(store, iodef2("R-1"), origin="local")
        outbox_id = store.enqueue(
            SignedItem(entry.node, entry.item_id, b"", entry.incident, "2.0"),
            source="test",
            action="retract",
        )
        config = SimpleNamespace(pubsub_service=SERVICE, node_prefix="iodef", node_audience=lambda node: OPEN)
        xmpp = FakeXmpp(condition)
        task = asyncio.create_task(OutboxDrain(config, store, xmpp).run())  # type: ignore[arg-type]
        try:
            for _ in range(200):
                if store.outbox_item(outbox_id).status != "pending":
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
        assert xmpp.retracted == [(SERVICE, entry.node, entry.item_id)]
        assert store.outbox_item(outbox_id).status == status
        assert store.entry(entry.id).deleted == (status == "published")  # already gone counts as done
