"""Where a published item's store work goes, per backend: not a benchmark of the bridge, a profile of
its store calls without XMPP.

``store_writes.py [N] [DOCUMENT]``: N documents (320) submitted through ``Publisher.submit`` (validate,
sign, one committed outbox row each): ``bench.lab``'s small one, with no indicators, or copies of the
IODEF 2.0 file DOCUMENT with their own IncidentID and restriction
(``tests/data/iodef/iodef2-indicators.xml`` has seven indicators, so a copy is indexed as a document
with indicators is), then the outbox drained as the bridge marks it, ``pending`` and ``mark_published``
of 16 at a time (``xmpp.outbox.MARK_BATCH``), once into an SQLite store and once into a PostgreSQL one
(a private durable cluster on 127.0.0.173, as ``bench.lab.postgres``, with pg_stat_statements). Prints,
per backend, ms per item of wall time and of this process's CPU for both phases, and for PostgreSQL the
server's time per item and statement (execution and planning).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table  # noqa: E402
from bench.lab import RESTRICTIONS, consortium, document  # noqa: E402
from tests.postgres import private_cluster  # noqa: E402
from xmppbridge.iodef.model import NS_V2  # noqa: E402
from xmppbridge.paths.publish import Publisher  # noqa: E402
from xmppbridge.store import Store  # noqa: E402

N = 320
MARK_BATCH = 16
SETTINGS = {"fsync": "on", "shared_buffers": "256MB", "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track_planning": "on"}


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def copies(template: Path | None) -> Callable[[str, str], bytes]:
    """What each item is: ``bench.lab.document``, or ``template`` with that IncidentID and restriction."""
    if template is None:
        return document
    root = etree.parse(str(template)).getroot()

    def copy(incident_id: str, restriction: str) -> bytes:
        incident = root.find(f"{{{NS_V2}}}Incident")
        assert incident is not None, f"{template}: not an IODEF 2.0 document"
        incident.set("restriction", restriction)
        found = incident.find(f"{{{NS_V2}}}IncidentID")
        assert found is not None
        found.text = incident_id
        return etree.tostring(root)

    return copy


def phases(store: Store, publisher: Publisher, count: int,
           make: Callable[[str, str], bytes]) -> list[tuple[float, float]]:
    """(wall s, CPU s) of submitting ``count`` documents, then of marking them all published."""
    results = []
    wall, used = time.perf_counter(), cpu()
    for i in range(count):
        publisher.submit(make(f"x-{i:05d}", RESTRICTIONS[i % 4]), source="bench")
    results.append((time.perf_counter() - wall, cpu() - used))
    wall, used = time.perf_counter(), cpu()
    while items := store.pending(MARK_BATCH):
        store.mark_published(*(item.id for item in items), service="pubsub.a.test")
    results.append((time.perf_counter() - wall, cpu() - used))
    return results


def server_time(url: str, count: int) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT calls, total_exec_time, total_plan_time,"
            " left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
            " FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'"
            " ORDER BY total_exec_time + total_plan_time DESC LIMIT 12").fetchall()
    total = sum(ex + plan for _, ex, plan, _ in rows)
    out = [[str(calls), f"{ex / count * 1000:.0f}", f"{plan / count * 1000:.0f}", text]
           for calls, ex, plan, text in rows]
    out.append(["", f"{total / count * 1000:.0f}", "", "all of them (execution + planning)"])
    return table(out, ["calls", "exec us/item", "plan us/item", "statement"])


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else N
    make = copies(Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    with tempfile.TemporaryDirectory() as tmp, consortium(Path(tmp), ("a",)) as lab, \
            private_cluster(host="127.0.0.173", settings=SETTINGS) as cluster:
        url = cluster.create_database("writes")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        rows, servers = [], ""
        for name, target in (("sqlite", str(Path(tmp) / "writes.sqlite")), ("postgresql", url)):
            with Store(target) as store:
                publisher = lab.publisher(store)
                if name == "postgresql":
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("SELECT pg_stat_statements_reset()")
                (submit_wall, submit_cpu), (mark_wall, mark_cpu) = phases(store, publisher, count, make)
                if name == "postgresql":
                    servers = server_time(url, count)
            rows.append([name, *(f"{x / count * 1000:.2f}" for x in (submit_wall, submit_cpu, mark_wall,
                                                                    mark_cpu))])
    print(f"Store work of {count} published items ({sys.argv[2] if len(sys.argv) > 2 else 'bench.lab'}"
          " documents), ms per item (one run)")
    print(table(rows, ["store", "submit wall", "submit CPU", "mark wall", "mark CPU"]))
    print(f"\nPostgreSQL server, both phases\n{servers}")


if __name__ == "__main__":
    main()
