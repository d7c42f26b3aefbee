from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from xmppbridge.demo.consortium import Consortium
from xmppbridge.policy import RESTRICTIONS

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
    consortium = Consortium(tmp_path_factory.mktemp("consortium"), {"a": "127.0.0.12", "b": "127.0.0.13"},
                            feed_port_base=18081, discovery_interval=1.0)
    consortium.write_files(anonymous_restrictions=list(RESTRICTIONS))
    try:
        consortium.start_servers()
        consortium.start_bridge("a")
        consortium.start_bridge("b")
        yield consortium
    finally:
        consortium.stop()
