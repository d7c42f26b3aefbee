"""The watched folder: files in, published files to done/, rejected ones to failed/ with a reason."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from xmppbridge.paths.publish import Publisher
from xmppbridge.paths.spool import Spool
from xmppbridge.signing.keys import generate_identity_files
from xmppbridge.store import Store


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    # subjectAltName a.test: the samples' IncidentIDs are csirt.a.test.
    identity = generate_identity_files("CSIRT A", tmp_path / "k.pem", tmp_path / "c.pem", domains=("a.test",))
    return Publisher(Store(tmp_path / "store.sqlite"), identity, prefix="iodef", max_bytes=400_000)


def drop(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    settled = time.time() - 5  # as if written a while ago
    os.utime(path, (settled, settled))
    return path


async def drain_as_the_bridge_would(publisher: Publisher, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for item in publisher.store.pending():
            publisher.store.mark_published(item.id, service="pubsub.a.test")
        await asyncio.sleep(0.02)


async def run_spool(spool: Spool, publisher: Publisher, until: Callable[[], bool], *,
                    timeout: float = 10) -> None:
    """Run the spool and a stand-in drain until ``until()`` holds or ``timeout`` passes."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(spool.run()),
             asyncio.create_task(drain_as_the_bridge_would(publisher, stop))]
    try:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_published_files_go_to_done_and_bad_ones_to_failed_with_a_reason(
        tmp_path: Path, publisher: Publisher) -> None:
    spool_dir = tmp_path / "spool"
    drop(spool_dir, "good.xml", (SAMPLES / "01-phishing-public-v2.xml").read_bytes())
    drop(spool_dir, "mixed.xml", (SAMPLES / "07-mixed-white-red-v2.xml").read_bytes())
    drop(spool_dir, "bad.xml", b"<IODEF-Document/>")
    drop(spool_dir, "notes.txt", b"not for publishing")
    spool = Spool(spool_dir, publisher, interval=0.05)
    await run_spool(spool, publisher, lambda: len(list((spool_dir / "done").iterdir())) == 2
                    and (spool_dir / "failed" / "bad.xml.reason").exists())

    assert sorted(p.name for p in (spool_dir / "done").iterdir()) == ["good.xml", "mixed.xml"]
    assert sorted(p.name for p in (spool_dir / "failed").iterdir()) == ["bad.xml", "bad.xml.reason"]
    assert "wrong-namespace" in (spool_dir / "failed" / "bad.xml.reason").read_text()
    assert (spool_dir / "notes.txt").exists() and not list((spool_dir / "processing").iterdir())
    # good.xml gave one item, mixed.xml two (one per restriction); all published, none twice.
    assert len(publisher.store.entries(limit=100)) == 3


async def test_a_file_claimed_before_a_restart_is_not_submitted_twice(
        tmp_path: Path, publisher: Publisher) -> None:
    spool_dir = tmp_path / "spool"
    claimed = drop(spool_dir / "processing", "1700000000000-good.xml",
                   (SAMPLES / "01-phishing-public-v2.xml").read_bytes())
    # The bridge stopped after committing the file to the outbox but before publishing it.
    publisher.submit(claimed.read_bytes(), source=f"spool:{claimed.name}")
    spool = Spool(spool_dir, publisher, interval=0.05)
    await run_spool(spool, publisher, lambda: (spool_dir / "done" / "good.xml").exists())

    assert (spool_dir / "done" / "good.xml").exists()
    assert len(publisher.store.outbox_ids_for_source(f"spool:{claimed.name}")) == 1


async def test_a_file_still_being_written_is_left_alone(tmp_path: Path, publisher: Publisher) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "fresh.xml").write_bytes((SAMPLES / "01-phishing-public-v2.xml").read_bytes())
    spool = Spool(spool_dir, publisher, interval=0.05)
    await run_spool(spool, publisher, lambda: False, timeout=0.5)
    assert (spool_dir / "fresh.xml").exists()


async def test_a_document_every_peer_would_quarantine_is_kept_in_failed_with_the_reason(
        tmp_path: Path, publisher: Publisher) -> None:
    spool_dir = tmp_path / "spool"
    foreign = (SAMPLES / "01-phishing-public-v2.xml").read_bytes().replace(b'name="csirt.a.test"',
                                                                           b'name="csirt.b.test"')
    drop(spool_dir, "foreign.xml", foreign)
    drop(spool_dir, "good.xml", (SAMPLES / "02-scanning-green-v2.xml").read_bytes())
    spool = Spool(spool_dir, publisher, interval=0.05)
    await run_spool(spool, publisher, lambda: (spool_dir / "done" / "good.xml").exists()
                    and (spool_dir / "failed" / "foreign.xml.reason").exists())

    assert (spool_dir / "failed" / "foreign.xml").read_bytes() == foreign
    reason = (spool_dir / "failed" / "foreign.xml.reason").read_text()
    assert reason.startswith("domain-not-allowed: IncidentID name 'csirt.b.test'")
    assert "signing.domains" in reason
    # Only the good file reached the outbox; the spool went on after the refusal.
    assert [e.incident.id_name for e in publisher.store.entries(limit=100)] == ["csirt.a.test"]
