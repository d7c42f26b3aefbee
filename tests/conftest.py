from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp.test_utils import TestClient

from tests.integration import loopback_consortium, running
from tests.postgres import Cluster, private_cluster
from tests.test_feed_support import client_for
from xmppbridge.demo.consortium import Consortium
from xmppbridge.store import Store

if TYPE_CHECKING:
    from tests.test_feed_support import AtomSchemas

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "config" / "samples"
STORE_TEMPLATE = "store_template"
_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One private PostgreSQL cluster for the whole run (tests/postgres.py), with a template database
    holding the store's schema, so that each test's database is a quick copy."""
    with private_cluster() as cluster:
        Store(cluster.create_database(STORE_TEMPLATE)).close()  # migrated from version 1, as on any start
        yield cluster


@pytest.fixture
def pg_store_url(pg_cluster: Cluster) -> Iterator[str]:
    """A PostgreSQL store of its own for one test: an empty database with the current schema."""
    name = f"store_{next(_databases)}"
    yield pg_cluster.create_database(name, template=STORE_TEMPLATE)
    pg_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a contract test's store lives: an SQLite file, or a PostgreSQL database. Every test taking it
    runs on both backends."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("pg_store_url")


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    """Two Prosody servers (a.test, b.test) federated over s2s on loopback, one real bridge each.

    B subscribes to all of A's nodes and A to all of B's. Addresses and ports differ from the demo's, so
    the tests run while a demo is up.
    """
    if shutil.which("prosody") is None:
        pytest.fail("prosody is not installed: run `make test`, which installs it")
    consortium = loopback_consortium(tmp_path_factory.mktemp("consortium"), {"a": 12, "b": 13},
                                     feed_port_base=18081, discovery_interval=1.0)
    # Anonymous readers see public collections only, as in the demo; the feed tests sign in as
    # "analyst" (everything), "member" (consortium restrictions but private) or "outsider" (no rights).
    # Small archives, so that the feed tests see RFC 5005 archives close.
    consortium.write_files(users={"member": {"read": ["public", "partner", "need-to-know", "default"]},
                                  "outsider": {"read": []}}, feed={"archive_size": 5})
    with running(consortium):
        yield consortium


@pytest.fixture(scope="session")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> AtomSchemas:
    """The Atom, AtomPub and ROLIE RELAX NG schemas, converted from the RFCs' compact syntax with trang."""
    from tests.test_feed_support import convert_schemas

    return convert_schemas(tmp_path_factory.mktemp("rng"))


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient]:
    """The feed app in process over the test module's own ``store`` fixture (the feed support's users)."""
    client = await client_for(store)
    yield client
    await client.close()
