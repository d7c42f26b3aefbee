"""A watched folder: a ticket system drops IODEF files in, the bridge publishes them.

Each ``*.xml`` file is claimed by moving it into ``processing/`` (under a unique name, so two drops of
the same file name never collide), submitted through the same path as `xmppbridge publish`, and moved to
``done/`` once published or to ``failed/`` with a ``<name>.reason`` file beside it (the reason code, e.g.
``domain-not-allowed`` for what every peer would quarantine, then what to do). A file claimed but not
finished when the bridge stopped is picked up again from ``processing/``; its outbox entries are found by
their source tag, so it is not submitted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from xmppbridge.errors import InputRejected
from xmppbridge.paths.publish import Publisher

log = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0  # a file modified more recently may still be being written


class Spool:
    def __init__(self, directory: Path, publisher: Publisher, *, interval: float = 2.0,
                 publish_timeout: float = 3600.0) -> None:
        self.directory, self.publisher = directory, publisher
        self.interval, self.publish_timeout = interval, publish_timeout
        self.processing, self.done, self.failed = (directory / "processing", directory / "done",
                                                   directory / "failed")
        for folder in (self.processing, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    async def run(self) -> None:
        for claimed in sorted(self.processing.iterdir()):
            await self._finish(claimed)
        while True:
            for path in self._ready_files():
                claimed = self.processing / f"{time.time_ns()}-{path.name}"
                try:
                    path.rename(claimed)
                except FileNotFoundError:
                    continue  # taken away meanwhile
                await self._finish(claimed)
            await asyncio.sleep(self.interval)

    def _ready_files(self) -> list[Path]:
        settled = time.time() - SETTLE_SECONDS
        return sorted(p for p in self.directory.glob("*.xml")
                      if p.is_file() and not p.name.startswith(".") and p.stat().st_mtime < settled)

    async def _finish(self, claimed: Path) -> None:
        source = f"spool:{claimed.name}"
        outbox_ids = self.publisher.store.outbox_ids_for_source(source)
        if not outbox_ids:
            try:
                outbox_ids = [a.outbox_id for a in self.publisher.submit(claimed.read_bytes(), source=source)]
            except InputRejected as exc:
                self._fail(claimed, f"{exc.reason}: {exc}\n" + "".join(f"  {d}\n" for d in exc.details))
                return
        reasons = []
        for outbox_id in outbox_ids:
            outcome = await self.publisher.wait_async(outbox_id, self.publish_timeout)
            if outcome is None:
                reasons.append(f"outbox item {outbox_id} not published within {self.publish_timeout:.0f} s")
            elif outcome.status == "failed":
                reasons.append(f"not published: {outcome.reason}")
        if reasons:
            self._fail(claimed, "\n".join(reasons) + "\n")
        else:
            claimed.rename(self.done / _original_name(claimed))
            log.info("published %s from the spool", _original_name(claimed))

    def _fail(self, claimed: Path, reason: str) -> None:
        target = _free_name(self.failed / _original_name(claimed))
        claimed.rename(target)
        target.with_name(target.name + ".reason").write_text(reason, encoding="utf-8")
        log.warning("spool file %s failed: %s", target.name, reason.splitlines()[0])


def _original_name(claimed: Path) -> str:
    return claimed.name.partition("-")[2]


def _free_name(path: Path) -> Path:
    """``path``, or ``name.1.xml``, ``name.2.xml``... when a file of that name is already there."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return candidate
