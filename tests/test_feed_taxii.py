"""TAXII 2.1 (feed/taxii.py) driven by taxii2-client, the library MISP's and OpenCTI's connectors use:
discovery, API root, collections per reader, objects and manifest paged with limit/next and added_after,
an incident by id; a stranger sees nothing beyond public, and whatever it may not see is 404."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp.test_utils import TestServer
from lxml import etree
from requests import HTTPError
from stix2validator import ValidationOptions, validate_string
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from tests.conftest import SAMPLES
from tests.test_feed_support import (
    ANALYST,
    MEMBER,
    MITIGATOR,
    OUTSIDER,
    TestUser,
    iodef2,
    settings,
    store_document,
)
from xmppbridge.feed import stix, taxii, taxiiroutes
from xmppbridge.feed.app import make_app
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.feed.taxiimatch import Match, chosen
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


def _objects(store: Store, restriction: str, urls: FeedUrls) -> list[dict[str, Any]]:
    """Every STIX object of the collection's live entries (those several share, more than once)."""
    entries = [store.entry(e.id) for e in store.entries(restrictions=[restriction], limit=1000)]
    return [o for e in entries if e is not None and not e.deleted
            for o in json.loads(stix.bundle([e], urls)).get("objects", [])]


def expected(store: Store, restriction: str, urls: FeedUrls) -> set[str]:
    """The ids of every STIX object of the collection's live entries."""
    return {o["id"] for o in _objects(store, restriction, urls)}


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


def _collection(base: str, who: TestUser | None, restriction: str) -> Collection:
    auth = {} if who is None else {"user": who.name, "password": who.password}
    return Collection(f"{base}taxii2/api/collections/{taxii.collection_id(restriction)}/", **auth)


def _paged(func: Any, per_request: int, **filters: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page taxii2-client's as_pages reads with these filters, and their objects."""
    pages = list(as_pages(func, per_request=per_request, **filters))
    return pages, [o for p in pages for o in p.get("objects", [])]


async def test_match_filters_select_objects_and_manifest_across_pages(store: Store, base: str) -> None:
    every = _objects(store, "public", FeedUrls(base))
    incidents = {o["id"] for o in every if o["type"] == "incident"}
    two = sorted(incidents)[:2]
    observables = {o["id"] for o in every if o["type"] in ("ipv4-addr", "domain-name")}

    def read() -> dict[str, Any]:
        public = _collection(base, MEMBER, "public")
        pages, typed = _paged(public.get_objects, 4, type="incident")
        _, listed = _paged(public.get_manifest, 4, type="incident")
        _, several = _paged(public.get_objects, 4, type="ipv4-addr,domain-name")
        _, chosen = _paged(public.get_objects, 4, id=",".join(two))
        _, both = _paged(public.get_objects, 4, id=",".join(two), type="identity")  # filters AND
        _, spec = _paged(public.get_objects, 50, spec_version="2.0")
        return {"pages": pages, "typed": typed, "listed": listed, "several": several, "chosen": chosen,
                "both": both, "spec": spec}

    found = await asyncio.to_thread(read)
    assert [o["id"] for o in found["typed"]] == [m["id"] for m in found["listed"]]  # same order and paging
    assert {o["id"] for o in found["typed"]} == incidents and len(found["typed"]) == len(incidents)
    assert {o["type"] for o in found["several"]} <= {"ipv4-addr", "domain-name"}
    assert {o["id"] for o in found["several"]} == observables
    assert sorted(o["id"] for o in found["chosen"]) == two
    assert found["both"] == [] and found["spec"] == []
    # 'more' with a 'next' on every page but the last, whose 'more' is false and has no 'next'
    pages = found["pages"]
    assert len(pages) > 2 and all(len(p["objects"]) == 4 and p["more"] and p["next"] for p in pages[:-1])
    assert pages[-1]["more"] is False and "next" not in pages[-1]


async def test_versions_and_match_version_reach_an_incidents_earlier_versions(store: Store,
                                                                             base: str) -> None:
    first = store_document(store, iodef2("V-1", restriction="partner", description="first assessment"))
    store_document(store, iodef2("V-1", restriction="partner", description="revised: also 192.0.2.77"))
    current = store.entry(first.id)
    assert current is not None and current.revision == 2
    [incident] = [o["id"] for o in json.loads(stix.bundle([current], FeedUrls(base)))["objects"]
                  if o["type"] == "incident"]

    def read(who: TestUser | None) -> dict[str, Any]:
        partner = _collection(base, who, "partner")
        versions = partner.object_versions(incident)
        return {
            "versions": versions, "paged": _versions_pages(partner, incident),
            "latest": partner.get_object(incident), "all": partner.get_object(incident, version="all"),
            "first": partner.get_object(incident, version="first"),
            "at": partner.get_object(incident, version=versions["versions"][0]),
            "objects": _paged(partner.get_objects, 3, id=incident, version="all")[1],
            "manifest": _paged(partner.get_manifest, 3, id=incident, version="all")[1],
            "default": _paged(partner.get_objects, 3, id=incident)[1],
        }

    found = await asyncio.to_thread(read, MEMBER)
    older, newer = found["versions"]["versions"]
    assert older < newer and found["versions"]["more"] is False
    assert [v for p in found["paged"] for v in p.get("versions", [])] == [older, newer]
    assert [o["modified"] for o in found["latest"]["objects"]] == [newer]
    assert [o["modified"] for o in found["all"]["objects"]] == [older, newer]
    assert [o["modified"] for o in found["first"]["objects"]] == [older] == \
        [o["modified"] for o in found["at"]["objects"]]
    [signed] = [r for r in found["first"]["objects"][0]["external_references"] if r["source_name"] == "iodef"]
    assert signed["description"].endswith("revision 1")  # the first signed document, as it was
    assert [o["modified"] for o in found["objects"]] == [older, newer]
    assert [m["version"] for m in found["manifest"]] == [older, newer]
    assert [o["modified"] for o in found["default"]] == [newer]  # match[version] is last by default
    for stranger in (OUTSIDER, None):  # nothing beyond public: 404, as if nothing were there
        partner = _collection(base, stranger, "partner")
        for call in (partial(partner.object_versions, incident),
                     partial(partner.get_object, incident, version="all"),
                     partial(partner.get_objects, id=incident, version="all")):
            with pytest.raises(HTTPError) as refused:
                await asyncio.to_thread(call)
            assert refused.value.response.status_code == 404
        public = _collection(base, stranger, "public")  # nor does asking a collection it may read for it
        _, leaked = await asyncio.to_thread(_paged, public.get_objects, 50, id=incident, version="all")
        assert leaked == []
        with pytest.raises(HTTPError) as elsewhere:
            await asyncio.to_thread(public.object_versions, incident)
        assert elsewhere.value.response.status_code == 404


def _versions_pages(partner: Collection, incident: str) -> list[dict[str, Any]]:
    """The versions resource a page of one at a time, following 'next' while 'more'."""
    pages = [partner.object_versions(incident, limit=1)]
    while pages[-1]["more"]:
        pages.append(partner.object_versions(incident, limit=1, next=pages[-1]["next"]))
    return pages


async def test_bad_filters_are_refused_with_a_taxii_error(base: str) -> None:
    url = f"{base}taxii2/api/collections/{taxii.collection_id('public')}/objects/"

    def status(params: dict[str, str]) -> tuple[int, str]:
        response = requests.get(url, params=params, headers={"Accept": taxii.MEDIA_TYPE}, timeout=10)
        return response.status_code, response.json()["title"] if response.status_code == 400 else ""

    for params, says in (({"match[colour]": "red"}, "match[colour] is not a filter"),
                         ({"match[version]": "newest"}, "match[version] must be last, first, all")):
        code, title = await asyncio.to_thread(status, params)
        assert code == 400 and title.startswith(says), title


def test_match_parses_the_filters_and_chooses_versions() -> None:
    match = Match.parse({"match[type]": "incident, indicator", "match[version]": "first,2024-05-02T08:05:00Z",
                         "limit": "5"})
    assert match.types == {"incident", "indicator"} and match.ids is None and not match.latest_only
    assert match.versions == ("first", "2024-05-02T08:05:00Z")
    assert Match.parse({}).latest_only  # match[version] is last unless asked
    with pytest.raises(ValueError, match=r"match\[id\] is not a filter of this endpoint"):
        Match.parse({"match[id]": "x"}, ("version", "spec_version"))
    stamps = ["2024-05-03T00:00:00.000Z", "2024-05-01T00:00:00.000Z", "2024-05-02T08:05:00.000Z"]
    assert chosen(stamps, ("last",)) == {stamps[0]} and chosen(stamps, ("first",)) == {stamps[1]}
    assert chosen(stamps, ("all",)) == set(stamps)
    assert chosen(stamps, match.versions) == {stamps[1], stamps[2]}  # first, and the one at that moment
    assert Match(spec_versions=frozenset(["2.1"])).selects({"id": "ipv4-addr--1", "type": "ipv4-addr"})


async def test_a_page_stops_early_when_a_filter_matches_few_and_the_walk_still_finds_all(
        store: Store, base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(taxiiroutes, "_SCAN", 2)  # entries turned into STIX per page at most
    incidents = [o["id"] for o in _objects(store, "public", FeedUrls(base)) if o["type"] == "incident"]
    public = _collection(base, ANALYST, "public")
    pages, found = await asyncio.to_thread(_paged, public.get_objects, 10, type="incident")
    assert sorted(o["id"] for o in found) == sorted(incidents)  # each once
    assert pages[0]["more"] and len(pages[0]["objects"]) == 2 < 10 and pages[0]["next"]  # short, with more
    assert pages[-1]["more"] is False and "next" not in pages[-1]


def _with_address(incident_id: str, address: str, **fields: str) -> bytes:
    """``iodef2`` with an attacker's address: an observable, a detection and their relationships."""
    flow = (f'<EventData><Flow><System category="source"><Node><Address category="ipv4-addr">{address}'
            "</Address></Node></System></Flow></EventData>")
    return iodef2(incident_id, **fields).replace(b"</Contact>", b"</Contact>" + flow.encode())


def _by_id(base: str, who: TestUser | None, restriction: str, object_id: str) -> tuple[Any, Any]:
    """The object and its versions, or the HTTP status for each that is refused."""
    collection = _collection(base, who, restriction)
    answers: list[Any] = []
    for call in (collection.get_object, collection.object_versions):
        try:
            answers.append(call(object_id))
        except HTTPError as refused:
            answers.append(refused.response.status_code)
    return answers[0], answers[1]


async def test_every_object_by_id_for_every_reader_and_nothing_beyond(store: Store, base: str) -> None:
    """TAXII's object by id (§5.5) and its versions (§5.6) for every kind of object a collection holds
    (incidents, identities, markings, observables, detections, relationships), through the object
    index: each reader gets every object it walked, from the collection it walked it in, and for
    every object in a collection that another reader may see and it may not (another purpose, another
    collection), 404."""
    for n, purpose in enumerate(("reporting", "mitigation")):  # MITIGATOR may read the second alone
        store_document(store, _with_address(f"O-{n}", f"198.51.100.{201 + n}", restriction="need-to-know",
                                            purpose=purpose))
    first = store_document(store, _with_address("O-3", "198.51.100.203", restriction="partner"))
    store_document(store, _with_address("O-3", "198.51.100.204", restriction="partner"))  # a new version
    readers = (ANALYST, MEMBER, MITIGATOR, OUTSIDER, None)
    walked = {who: await asyncio.to_thread(walk, base, who, 200) for who in readers}
    everything = {(title, o["id"]) for title, seen in walked[ANALYST].items() for o in seen["objects"]}
    kinds = {object_id.partition("--")[0] for _, object_id in everything}
    assert {"incident", "identity", "marking-definition", "ipv4-addr", "indicator", "relationship"} <= kinds

    def check(who: TestUser | None) -> None:
        seen = walked[who]
        for title, object_id in sorted(everything):
            restriction = title.removeprefix("Incidents (").removesuffix(")")
            found, versions = _by_id(base, who, restriction, object_id)
            walked_as = [o for o in seen.get(title, {"objects": []})["objects"] if o["id"] == object_id]
            if not walked_as:
                assert (found, versions) == (404, 404), (who, title, object_id)
                continue
            [one] = found["objects"]
            assert one in walked_as, (who, title, object_id)
            assert versions["versions"] and not versions["more"]

    for who in readers:
        await asyncio.to_thread(check, who)
    urls = FeedUrls(base)
    sco = {o["value"]: o["id"] for o in _objects(store, "need-to-know", urls) if o["type"] == "ipv4-addr"}
    other, own = [await asyncio.to_thread(_by_id, base, MITIGATOR, "need-to-know", sco[f"198.51.100.{n}"])
                  for n in (201, 202)]
    assert other == (404, 404) and own[0] != 404  # an observable only another purpose's entry holds
    # The address the new version dropped is in the collection's history only: by id as on the objects
    # resource, it is there with match[version]=all, not in the latest state.
    partner = _collection(base, ANALYST, "partner")
    oldest = store.revisions(first.id)[-1].entry
    assert oldest.revision == 1 and len(store.revisions(first.id)) == 2
    dropped = json.loads(stix.bundle([oldest], urls))
    [old] = [o["id"] for o in dropped["objects"] if o.get("value") == "198.51.100.203"]
    assert (await asyncio.to_thread(_by_id, base, ANALYST, "partner", old))[0] == 404
    again = await asyncio.to_thread(partner.get_object, old, version="all")
    assert [o["value"] for o in again["objects"]] == ["198.51.100.203"]
