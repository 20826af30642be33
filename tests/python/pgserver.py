"""The test suites' Postgres: the project's own local Postgres helper (orchestration/local_postgres.py), one
cluster per session on a free loopback port, killed at the end. Registered as a fixture by tests/conftest.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from support.cli import ROOT, environment

from orchestration.local_postgres import PostgresCluster, create_source_tables, temporary_cluster

__all__ = ["PostgresCluster", "create_source_tables", "fresh_database", "postgres_server", "simulate_day"]


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


def simulate_day(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ingestion.postgres.simulate --dsn DSN ARGS...`, as a user types it: the simulator's next day
    written into the database."""
    command = [sys.executable, "-m", "ingestion.postgres.simulate", "--dsn", dsn, *args]
    return subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300)
