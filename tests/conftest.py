from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration import loopback_consortium, running
from xmppbridge.demo.consortium import Consortium

if TYPE_CHECKING:
    from tests.test_feed_support import AtomSchemas

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "config" / "samples"


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
