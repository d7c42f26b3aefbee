"""The MISP feed (feed/misp.py, /misp/...): PyMISP loads every event, and computes from them the very
manifest and hashes.csv the feed serves; the UUID stays across versions; readers get only what their
rights allow, and a stranger nothing beyond public."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from lxml import etree
from pymisp import MISPEvent

from tests.conftest import SAMPLES
from tests.test_feed_support import ANALYST, MEMBER, OUTSIDER, iodef2, store_document
from xmppbridge.feed import misp
from xmppbridge.iodef.document import read_document, split_document
from xmppbridge.iodef.indicators import of_document
from xmppbridge.iodef.uuids import incident_uuid
from xmppbridge.store import Store
from xmppbridge.store.search import SearchQuery

DATA = Path(__file__).parent / "data"
DOCUMENTS = sorted([*SAMPLES.glob("*.xml"), *(DATA / "iodef").glob("*.xml"),
                    *(p for p in (DATA / "signing").glob("*.xml") if "template" not in p.name)])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as opened:
        for path in DOCUMENTS:
            for piece in split_document(read_document(path.read_bytes())):
                store_document(opened, etree.tostring(piece.root))
        yield opened


async def get_json(client: TestClient, path: str, headers: dict[str, str]) -> dict:
    response = await client.get(path, headers=headers)
    assert response.status == 200, (path, response.status)
    return json.loads(await response.read())


def incidents() -> set[str]:
    """The derived UUID of every Incident of the documents."""
    return {str(incident_uuid(i.id_name, i.id)) for path in DOCUMENTS
            for i in read_document(path.read_bytes()).incidents}


async def test_pymisp_loads_every_event_and_derives_the_same_manifest_and_hashes(client: TestClient) -> None:
    manifest = await get_json(client, "/misp/manifest.json", ANALYST.headers)
    assert set(manifest) == incidents()  # one event per Incident
    hashes = await (await client.get("/misp/hashes.csv", headers=ANALYST.headers)).text()
    expected_hashes: list[str] = []
    for uuid, summary in manifest.items():
        loaded = MISPEvent()
        loaded.load(await get_json(client, f"/misp/{uuid}.json", ANALYST.headers))
        assert loaded.uuid == uuid and loaded.published
        assert loaded.manifest == {uuid: summary}  # what MISP's own tooling makes of the event
        assert [t.name for t in loaded.tags][0].startswith("tlp:")
        assert all(a.type in loaded.describe_types["types"] for a in loaded.attributes)
        expected_hashes += [f"{h},{uuid}" for h in loaded.attributes_hashes("md5")]
    # Built from the indicator index, each line once: MISP keeps them in a set (downloads, misp.hashes_csv).
    lines = hashes.splitlines()
    assert len(lines) == len(set(lines)) and set(lines) == set(expected_hashes) and expected_hashes


async def test_an_event_names_its_restriction_indicators_and_origin(store: Store, client: TestClient) -> None:
    uuid = str(incident_uuid("csirt.a.test", "A-2024-0104"))  # the amber (need-to-know) DDoS sample
    event = (await get_json(client, f"/misp/{uuid}.json", ANALYST.headers))["Event"]
    assert event["Orgc"]["name"] == "csirt.a.test" and event["distribution"] == "0"
    assert {t["name"] for t in event["Tag"]} == {"tlp:amber+strict", 'iodef:purpose="mitigation"',
                                                 'iodef:incident-id="csirt.a.test:A-2024-0104"'}
    values = {(a["type"], a["value"], a["to_ids"]) for a in event["Attribute"]}
    assert values == {("ip-src", "192.0.2.0/25", True), ("port", "53", True),
                      ("domain", "www.example.com", False), ("ip-dst", "198.51.100.10", False)}


async def test_the_uuid_stays_and_the_timestamp_moves_with_a_new_version(store: Store,
                                                                       client: TestClient) -> None:
    first = store_document(store, iodef2("M-1", description="first"))
    uuid = misp.event_uuid(first)
    before = (await get_json(client, f"/misp/{uuid}.json", MEMBER.headers))["Event"]
    second = store_document(store, iodef2("M-1", description="second"))
    after = (await get_json(client, f"/misp/{uuid}.json", MEMBER.headers))["Event"]
    assert misp.event_uuid(second) == uuid and second.revision == 2
    assert (before["info"], after["info"]) == ("first", "second")
    assert int(after["timestamp"]) >= int(before["timestamp"])


async def test_readers_get_only_what_they_may_read(client: TestClient) -> None:
    everything = await get_json(client, "/misp/manifest.json", ANALYST.headers)
    for who, allowed in ((None, {"tlp:clear"}), (OUTSIDER, {"tlp:clear"}),
                         (MEMBER, {"tlp:clear", "tlp:green", "tlp:amber+strict", "tlp:red"})):
        headers = {} if who is None else who.headers
        seen = await get_json(client, "/misp/manifest.json", headers)
        assert seen and {t["name"] for s in seen.values() for t in s["Tag"] if t["name"].startswith("tlp:")} \
            <= allowed
        hashes = await (await client.get("/misp/hashes.csv", headers=headers)).text()
        assert {line.split(",")[1] for line in hashes.splitlines()} <= set(seen)
        for uuid in everything:
            answer = await client.get(f"/misp/{uuid}.json", headers=headers)
            assert answer.status == (200 if uuid in seen else 404), (who, uuid)
    public = await get_json(client, "/misp/manifest.json", {})
    member = await get_json(client, "/misp/manifest.json", MEMBER.headers)
    assert len(public) < len(member) < len(everything)  # the analyst also reads private
    assert (await client.get(f"/misp/{incident_uuid('x', 'y')}.json")).status == 404


@pytest.mark.parametrize("path", ["/misp/manifest.json", "/misp/hashes.csv"])
async def test_misps_conditional_pull_gets_304_until_something_it_may_read_changes(
        store: Store, client: TestClient, path: str) -> None:
    """What MISP's feed fetcher sends (If-None-Match with the ETag it kept), per reader's rights."""
    first = await client.get(path, headers=ANALYST.headers)
    etag = first.headers["ETag"]
    again = await client.get(path, headers={**ANALYST.headers, "If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag and not await again.read()
    assert "private" in again.headers["Cache-Control"] and "Authorization" in again.headers["Vary"]
    # Another reader's rights give another tag: the analyst's never validates the public reader's copy.
    public = await client.get(path, headers={"If-None-Match": etag})
    assert public.status == 200 and public.headers["ETag"] != etag
    assert (await client.get(path, headers={"If-None-Match": public.headers["ETag"]})).status == 304
    # A private entry changes the analyst's answer and not the public reader's.
    store_document(store, iodef2("M-9", restriction="private"))
    changed = await client.get(path, headers={**ANALYST.headers, "If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert (await client.get(path, headers={"If-None-Match": public.headers["ETag"]})).status == 304
    if path.endswith(".json"):
        assert str(incident_uuid("csirt.example.org", "M-9")) in json.loads(await changed.read())


@pytest.mark.parametrize("store_target", ["sqlite", "postgresql"], indirect=True)
def test_the_store_reads_last_changes_and_indicator_rows_alike_on_both_backends(store_target: str) -> None:
    with Store(store_target) as opened:
        entry = store_document(opened, (SAMPLES / "04-ddos-amber-v2.xml").read_bytes())
        assert opened.last_seqs(["need-to-know", "public"]) == {"need-to-know": 1, "public": 0}
        assert opened.last_seqs([]) == {}
        stored = opened.stored_indicators([entry.id, entry.id + 1000])
        assert set(stored) == {entry.id} and opened.stored_indicators([]) == {}
        assert stored[entry.id] == of_document(entry.xml)  # what the event's attributes are made of
        named = {(i.kind, i.value) for i in stored[entry.id]}
        assert named >= {("ipv4-net", "192.0.2.0/25"), ("port", "53/udp")}


@pytest.mark.parametrize("store_target", ["sqlite", "postgresql"], indirect=True)
def test_the_manifests_narrow_read_gives_the_heads_of_what_a_search_finds(store_target: str) -> None:
    """``Store.heads`` (the MISP window's read, columns only) is the same entries, in the same order, and
    the same values as the whole entries a search with no criteria finds, for each reader's rights."""
    with Store(store_target) as opened:
        for path in DOCUMENTS[:12]:
            for piece in split_document(read_document(path.read_bytes())):
                store_document(opened, etree.tostring(piece.root))
        gone = store_document(opened, iodef2("M-7", restriction="partner"))
        assert opened.mark_deleted(gone.service, gone.node, gone.item_id)
        for readable in ({"public": None}, {"public": None, "need-to-know": ["mitigation"]},
                         {r: None for r in ("public", "partner", "need-to-know", "private", "default")}):
            for limit in (3, 1000):
                found = opened.search(SearchQuery(), readable, limit=limit)
                assert opened.heads(readable, limit=limit) == [entry.head() for entry in found]
                assert found and all(not entry.deleted for entry in found)
