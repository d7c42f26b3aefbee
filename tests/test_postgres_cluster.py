"""The private PostgreSQL cluster the store's PostgreSQL tests will run on (issue 16): it starts as an
unprivileged user on one loopback port, takes SQL over psycopg, and leaves no process or file behind."""

from __future__ import annotations

import subprocess

import psycopg

from tests.postgres import _port_open, port_for_slot, private_cluster


def postmasters(directory: str) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if "postgres" in line and directory in line]


def test_a_private_cluster_starts_answers_and_leaves_nothing_behind() -> None:
    with private_cluster(port_for_slot() + 1) as cluster:  # beside the run's own (conftest.pg_cluster)
        assert postmasters(str(cluster.directory))
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            owner = conn.execute("SELECT current_user, inet_server_addr()::text").fetchone()
            assert owner == ("xmppbridge", f"{cluster.host}/32")
            conn.execute("CREATE TABLE probe (id integer PRIMARY KEY, note text NOT NULL)")
            conn.execute("INSERT INTO probe VALUES (1, 'café')")
            assert conn.execute("SELECT note FROM probe").fetchone() == ("café",)
            # Not the machine's own clusters: a fresh one, with only the default databases.
            names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            assert names == {"postgres", "template0", "template1"}
    assert not postmasters(str(cluster.directory))
    assert not _port_open(cluster.host, cluster.port)
    assert not cluster.directory.exists()
