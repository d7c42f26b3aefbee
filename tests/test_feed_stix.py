"""STIX 2.1 bundles of entries (feed/stix.py): every IODEF document of the tests and the samples converts
to a bundle that OASIS stix2-validator accepts with no errors and no warnings, the restriction becomes
the official TLP 2.0 marking, ids stay the same across versions and bridges, and the entry's access rule
holds."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stix2
from aiohttp.test_utils import TestClient
from lxml import etree
from stix2validator import ValidationOptions, validate_string

from tests import stix_library
from tests.conftest import SAMPLES
from tests.test_feed_support import ANALYST, MEMBER, OUTSIDER, iodef2, store_document
from xmppbridge.feed import stix
from xmppbridge.feed.layout import FeedUrls
from xmppbridge.iodef.document import read_document, split_document
from xmppbridge.iodef.indicators import Indicator
from xmppbridge.iodef.uuids import NAMESPACE, derived, derived_text, incident_uuid, member_uuid
from xmppbridge.store import Entry, Store

DATA = Path(__file__).parent / "data"
DOCUMENTS = sorted([*SAMPLES.glob("*.xml"), *(DATA / "iodef").glob("*.xml"),
                    *(p for p in (DATA / "signing").glob("*.xml") if "template" not in p.name)])
URLS = FeedUrls("https://feeds.example.org/rolie/")
TLP_IDS = {  # as FIRST's TLP 2.0 is published for STIX 2.1 by the OASIS CTI TC
    "public": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",  # TLP:CLEAR
    "partner": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",  # TLP:GREEN
    "need-to-know": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",  # TLP:AMBER+STRICT
    "private": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",  # TLP:RED
    "default": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as opened:
        yield opened


def objects(bundle: bytes) -> list[dict[str, Any]]:
    parsed = json.loads(bundle)
    assert parsed["type"] == "bundle"
    return parsed.get("objects", [])  # optional in an empty bundle (STIX 2.1 §8)


def as_indexed(store: Store, entries: list[Entry]) -> list[Entry]:
    """``entries`` with the indicators the index stored for them, as a page's export reads them (the
    conversion then parses no document): it must give the same bytes as parsing."""
    documents = store.current_documents([e.id for e in entries])
    assert all(documents[e.id].indicators is not None for e in entries)
    # An entry whose document was replaced since (a test stores one item twice) keeps its own, parsed.
    return [dataclasses.replace(e, indicators=documents[e.id].indicators) if documents[e.id].xml == e.xml
            else e for e in entries]


def of_type(bundle: bytes, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects(bundle) if o["type"] == kind]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_document_gives_a_bundle_the_oasis_validator_accepts(store: Store, path: Path) -> None:
    for piece in split_document(read_document(path.read_bytes())):  # as the bridge publishes them
        entry = store_document(store, etree.tostring(piece.root))
        bundle = stix.bundle([entry], URLS)
        assert bundle == stix_library.bundle([entry], URLS)  # the very bytes the stix2 library makes
        assert stix.bundle(as_indexed(store, [entry]), URLS) == bundle
        result = validate_string(bundle.decode(), ValidationOptions(version="2.1"))
        assert result.is_valid and not result.errors, [str(e) for e in result.errors]
        assert not result.warnings, [str(w) for w in result.warnings]  # not even a SHOULD is missed
        stix2.parse(bundle, allow_custom=False)  # and the library that tools use reads it back
        [incident] = of_type(bundle, "incident")
        assert incident["created_by_ref"] == of_type(bundle, "identity")[0]["id"]
        references = {r["source_name"]: r for r in incident["external_references"]}
        assert references[entry.incident.id_name]["external_id"] == entry.incident.id
        assert references["iodef-purpose"]["external_id"] == entry.incident.purpose.removeprefix("ext-")


def test_a_bundle_of_many_entries_is_the_one_the_stix2_library_makes(store: Store) -> None:
    """A collection's bundle, whose entries share objects (their member, the marking, observables), and
    values that JSON escapes: the objects, their ids (a cyber-observable's: of its value in canonical
    JSON, RFC 8785) and their order as the library gives them."""
    entries = [store_document(store, path.read_bytes()) for path in DOCUMENTS
               if len(split_document(read_document(path.read_bytes()))) == 1]
    awkward = (DATA / "iodef" / "iodef2-indicators.xml").read_bytes().replace(
        b"Drop.Example.NET.", "bücher.example".encode()).replace(
        b"victim@example.org", "josé@über.example".encode()).replace(
        b"invoice.pdf.exe", "résumé.exe?a=1&amp;b=%22".encode())
    entries.append(store_document(store, awkward))
    assert len(entries) > 5
    bundle = stix.bundle(entries, URLS)
    assert bundle == stix_library.bundle(entries, URLS)
    assert stix.bundle(as_indexed(store, entries), URLS) == bundle
    values = {o.get("value") for o in objects(bundle)}
    assert {"bücher.example", "josé@über.example",
            "http://drop.example.net:8080/résumé.exe?a=1&b=%22"} <= values
    assert stix.bundle([], URLS) == stix_library.bundle([], URLS)


@pytest.mark.parametrize("restriction", list(TLP_IDS))
def test_the_restriction_is_the_tlp_2_marking_on_every_object(store: Store, restriction: str) -> None:
    entry = store_document(store, iodef2("T-1", restriction=restriction))
    bundle = stix.bundle([entry], URLS)
    [marking] = of_type(bundle, "marking-definition")
    assert marking["id"] == TLP_IDS[restriction]
    assert marking["extensions"][stix.TLP2_EXTENSION]["tlp_2_0"] == stix.TLP_OF_RESTRICTION[restriction]
    assert all(o["object_marking_refs"] == [marking["id"]] for o in objects(bundle)
               if o["type"] != "marking-definition")


def test_observables_and_indicators_of_a_report(store: Store) -> None:
    entry = store_document(store, (DATA / "iodef" / "iodef2-indicators.xml").read_bytes())
    bundle = stix.bundle([entry], URLS)
    values = {(o["type"], o.get("value", o.get("number"))) for o in objects(bundle) if "value" in o}
    assert values >= {("domain-name", "drop.example.net"), ("ipv6-addr", "2001:db8::1"),
                      ("ipv4-addr", "203.0.113.0/25"), ("email-addr", "victim@example.org"),
                      ("url", "http://drop.example.net:8080/invoice.pdf.exe")}
    [file] = of_type(bundle, "file")
    assert file["hashes"] == {"SHA-256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
    patterns = {o["pattern"] for o in of_type(bundle, "indicator")}
    assert "[ipv4-addr:value ISSUBSET '203.0.113.0/25']" in patterns
    assert "[file:hashes.'SHA-256' = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']" \
        in patterns
    assert not any("victim@example.org" in p for p in patterns if "email" in p and "target" in p)
    # the victim (the target System) is an observable, not a detection
    targets = [o for o in of_type(bundle, "indicator") if "role: target" in o["description"]]
    assert targets == []
    incident = of_type(bundle, "incident")[0]["id"]
    related = of_type(bundle, "relationship")
    assert {r["target_ref"] for r in related} == {incident}
    assert {r["source_ref"] for r in related} == {o["id"] for o in objects(bundle)
                                                  if o["type"] not in ("incident", "identity", "bundle",
                                                                        "marking-definition", "relationship")}


def test_derived_ids_are_the_published_ones() -> None:
    """Tools key incidents by these ids: the same derivation forever (RFC 4122 §4.3 name-based, with a
    UUIDv4's version bits), whatever way it is computed."""
    assert str(incident_uuid("csirt.a.test", "A-2024-0201")) == "bd9038d0-da32-44cf-b60b-b8121088722f"
    assert str(member_uuid("csirt.a.test")) == "dea52167-2c13-4664-a5ed-8fe7f758a6c8"
    for kind, key in [("incident", ("bücher.example", "Ä/1")), ("relationship", ("a", "b", "c")), ("x", ())]:
        named = uuid.uuid5(NAMESPACE, kind + ":" + "/".join(key))
        assert derived(kind, *key) == uuid.UUID(bytes=named.bytes, version=4)
        assert derived_text(kind, *key) == str(derived(kind, *key))


def test_ids_stay_the_same_across_versions_and_stores(store: Store, tmp_path: Path) -> None:
    first = stix.bundle([store_document(store, iodef2("V-1", description="first at 192.0.2.10"))], URLS)
    second = stix.bundle([store_document(store, iodef2("V-1", description="second at 192.0.2.10"))], URLS)
    with Store(tmp_path / "elsewhere.sqlite") as other:  # another member's bridge, another feed
        elsewhere = stix.bundle([store_document(other, iodef2("V-1", description="first at 192.0.2.10"))],
                                FeedUrls("https://other.example/rolie/"))
    [one], [two], [three] = (of_type(b, "incident") for b in (first, second, elsewhere))
    assert one["id"] == two["id"] == three["id"]
    assert one["created"] == two["created"] and two["modified"] > one["modified"]
    assert one["name"] == "first at 192.0.2.10" and two["name"] == "second at 192.0.2.10"
    assert json.loads(first)["id"] != json.loads(second)["id"]  # a bundle of other contents
    assert stix.bundle([store.entry(1)], URLS) == second  # the same entry: the same bytes (and ETag)


def test_a_value_its_object_may_not_hold_is_left_out(store: Store) -> None:
    hostile = (SAMPLES / "03-malware-need-to-know-v1.xml").read_bytes().replace(
        b"ws-0415.corp.example.com", b"x.example'] OR [ipv4-addr:value = '0.0.0.0/0")
    bundle = stix.bundle([store_document(store, hostile)], URLS)
    assert [o["value"] for o in of_type(bundle, "domain-name")] == ["cdn-update.example.com"]
    assert not any("0.0.0.0" in o["pattern"] for o in of_type(bundle, "indicator"))
    assert validate_string(bundle.decode(), ValidationOptions(version="2.1")).is_valid


def test_a_quote_in_a_value_cannot_break_out_of_the_pattern() -> None:
    quoted = Indicator("url", "http://x.example/it's", "source")
    assert stix.pattern(quoted) == "[url:value = 'http://x.example/it\\'s']"
    assert stix.pattern(Indicator("domain", "a\\b", "source")) == "[domain-name:value = 'a\\\\b']"


async def test_the_bundle_is_served_under_the_entrys_access_rule(store: Store, client: TestClient) -> None:
    public = store_document(store, iodef2("P-1", restriction="public"))
    partner = store_document(store, iodef2("P-2", restriction="partner"))
    response = await client.get(f"/entries/{public.id}/stix.json")
    assert response.status == 200 and response.headers["Content-Type"] == stix.MEDIA_TYPE
    assert of_type(await response.read(), "incident")
    assert (await client.get(f"/entries/{partner.id}/stix.json", headers=OUTSIDER.headers)).status == 404
    assert (await client.get(f"/entries/{partner.id}/stix.json", headers=MEMBER.headers)).status == 200
    page = await (await client.get(f"/entries/{partner.id}", headers={**ANALYST.headers,
                                                                       "Accept": "text/html"})).text()
    assert f'href="{URLS.stix(partner.id)}"' in page
