"""TAXII 2.1 (feed/taxii.py) driven by taxii2-client, the library MISP's and OpenCTI's connectors use:
discovery, API root, collections per reader, objects and manifest paged with limit/next and added_after,
an incident by id; a stranger sees nothing beyond public, and whatever it may not see is 404."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp.test_utils import TestServer
from lxml import etree
from requests import HTTPError
from stix2validator import ValidationOptions, validate_string
from taxii2client.v21 import ApiRoot, Server, as_pages

from tests.conftest import SAMPLES
from tests.test_feed_support import ANALYST, MEMBER, OUTSIDER, TestUser, iodef2, settings, store_document
from xmppbridge.feed import stix, taxii
from xmppbridge.feed.app import make_app
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.document import read_document, split_document
from xmppbridge.store import Store

RESTRICTIONS = ("public", "partner", "need-to-know", "private", "default")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as opened:
        for path in sorted(SAMPLES.glob("*.xml")):
            for piece in split_document(read_document(path.read_bytes())):
                store_document(opened, etree.tostring(piece.root))
        for n in range(12):  # enough public entries for several pages
            store_document(opened, iodef2(f"T-{n}", description=f"scan {n} from 192.0.2.{n}"))
        yield opened


@pytest.fixture
async def base(store: Store, unused_tcp_port: int) -> AsyncIterator[str]:
    url = f"http://127.0.0.1:{unused_tcp_port}/"
    server = TestServer(make_app(store, settings(base_url=url)), host="127.0.0.1", port=unused_tcp_port)
    await server.start_server()
    yield url
    await server.close()


def expected(store: Store, restriction: str, urls: FeedUrls) -> set[str]:
    """The ids of every STIX object of the collection's live entries."""
    entries = [store.entry(e.id) for e in store.entries(restrictions=[restriction], limit=1000)]
    return {o["id"] for e in entries if e is not None and not e.deleted
            for o in json.loads(stix.bundle([e], urls)).get("objects", [])}


def walk(base: str, who: TestUser | None, per_request: int) -> dict[str, Any]:
    """What taxii2-client finds: per collection title, its objects' ids, the largest page, the manifest."""
    auth = {} if who is None else {"user": who.name, "password": who.password}
    server = Server(base + "taxii2/", **auth)
    assert "Read-only" in server.description and server.default.url == base + "taxii2/api/"
    found: dict[str, Any] = {}
    for collection in server.default.collections:
        assert collection.can_read and not collection.can_write
        pages = list(as_pages(collection.get_objects, per_request=per_request))
        objects = [o for p in pages for o in p.get("objects", [])]
        manifest = [m for p in as_pages(collection.get_manifest, per_request=per_request)
                    for m in p.get("objects", [])]
        found[collection.title] = {
            "ids": {o["id"] for o in objects}, "largest": max(len(p.get("objects", [])) for p in pages),
            "pages": len(pages), "manifest": {m["id"] for m in manifest}, "objects": objects,
            "collection": collection,
        }
    return found


@pytest.mark.parametrize("who", [ANALYST, MEMBER, OUTSIDER, None], ids=lambda w: w.name if w else "anonymous")
async def test_taxii2_client_walks_every_collection_it_may_read(store: Store, base: str,
                                                               who: TestUser | None) -> None:
    found = await asyncio.to_thread(walk, base, who, 7)
    readable = {None: {"public"}, OUTSIDER: {"public"},
                MEMBER: {"public", "partner", "need-to-know", "default"}, ANALYST: set(RESTRICTIONS)}[who]
    assert set(found) == {f"Incidents ({r})" for r in RESTRICTIONS if r in readable}
    urls = FeedUrls(base)
    for restriction in readable:
        seen = found[f"Incidents ({restriction})"]
        assert seen["ids"] == seen["manifest"] == expected(store, restriction, urls), restriction
        assert seen["largest"] <= 7  # limit is honoured
    public = found["Incidents (public)"]
    assert public["pages"] > 3  # paged, with next
    bundle = json.dumps({"type": "bundle", "id": "bundle--8b1cbbd5-8d3f-4b4a-9a3e-2f8d1e5e4f10",
                         "objects": list({o["id"]: o for o in public["objects"]}.values())})
    assert validate_string(bundle, ValidationOptions(version="2.1")).is_valid


async def test_added_after_and_the_date_headers(store: Store, base: str) -> None:
    def read() -> tuple[list[str], list[str]]:
        collection = next(c for c in ApiRoot(base + "taxii2/api/", user=MEMBER.name,
                                             password=MEMBER.password).collections
                          if c.title == "Incidents (public)")
        first = collection.get_objects(limit=5)
        last = requests.get(collection.url + "objects/", params={"limit": 5}, timeout=10,
                            headers={"Accept": taxii.MEDIA_TYPE}, auth=(MEMBER.name, MEMBER.password)).headers
        assert last["X-TAXII-Date-Added-First"] <= last["X-TAXII-Date-Added-Last"]
        after = collection.get_objects(added_after=last["X-TAXII-Date-Added-Last"])
        return [o["id"] for o in first["objects"]], [o["id"] for o in after.get("objects", [])]

    first, after = await asyncio.to_thread(read)
    incident = next(i for i in first if i.startswith("incident--"))
    assert incident not in after and after  # only what was added later
    newest = store_document(store, iodef2("T-new", description="added last"))
    _, again = await asyncio.to_thread(read)
    assert any(o.startswith("incident--") for o in again) and len(again) > len(after)
    assert newest.id


async def test_an_incident_by_id_and_what_a_stranger_may_not_see(store: Store, base: str) -> None:
    member = await asyncio.to_thread(walk, base, MEMBER, 50)
    partner = member["Incidents (partner)"]
    incident = next(i for i in partner["ids"] if i.startswith("incident--"))

    def fetch(who: TestUser | None) -> Any:
        auth = {} if who is None else {"user": who.name, "password": who.password}
        collection = ApiRoot(base + "taxii2/api/", **auth).collections[0].__class__(
            partner["collection"].url, **auth)
        return collection.get_object(incident)

    found = await asyncio.to_thread(fetch, MEMBER)
    assert [o["id"] for o in found["objects"]] == [incident]
    for stranger in (OUTSIDER, None):  # not even the collection is there for them
        with pytest.raises(HTTPError) as refused:
            await asyncio.to_thread(fetch, stranger)
        assert refused.value.response.status_code == 404
    other = next(i for i in member["Incidents (public)"]["ids"] if i.startswith("incident--"))
    with pytest.raises(HTTPError) as elsewhere:  # an incident of another collection is not in this one
        await asyncio.to_thread(lambda: partner["collection"].get_object(other))
    assert elsewhere.value.response.status_code == 404
