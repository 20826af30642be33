"""The test suites' Postgres: the project's own local Postgres helper (orchestration/local_postgres.py), one
cluster per session on a free loopback port, killed at the end. Registered as a fixture by tests/conftest.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from support.cli import ROOT, environment

from orchestration.local_postgres import PostgresCluster, create_source_tables, temporary_cluster

__all__ = [
    "PostgresCluster",
    "create_source_tables",
    "drop_slots",
    "fresh_database",
    "postgres_server",
    "simulate_day",
]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    """A real Postgres 15 (`wal_level=logical`, no fsync) for the whole session; tests take databases of their own
    with `fresh_database`."""
    cluster = temporary_cluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(graceful=False)
        shutil.rmtree(cluster.workdir, ignore_errors=True)


def fresh_database(cluster: PostgresCluster, prefix: str = "test") -> str:
    """A new, empty database of the session's cluster; its connection string."""
    return cluster.create_database(f"{prefix}_{uuid.uuid4().hex[:12]}")


def drop_slots(dsn: str, timeout: float = 30) -> None:
    """Drop the database's replication slots (log mode's), once their walsenders are gone: the session's cluster
    has room for 10, and a slot nobody reads keeps the cluster's write-ahead log."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) filter (where active), count(*) from pg_replication_slots "
                "where database = current_database()"
            ).fetchone()
            if row is None or row[1] == 0:
                return
            if row[0] == 0:
                conn.execute(
                    "select pg_drop_replication_slot(slot_name) from pg_replication_slots "
                    "where database = current_database()"
                )
                return
            time.sleep(0.1)


def simulate_day(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ingestion.postgres.simulate --dsn DSN ARGS...`, as a user types it: the simulator's next day
    written into the database."""
    command = [sys.executable, "-m", "ingestion.postgres.simulate", "--dsn", dsn, *args]
    return subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300)
