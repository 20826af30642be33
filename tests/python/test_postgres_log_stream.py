"""`python -m ingestion stream`: the log followed continuously, each change in the lake within the latency asked
for, and a real Ctrl-C or SIGTERM stopping it cleanly, with what it read published once and confirmed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest
from pgserver import PostgresCluster, drop_slots, fresh_database, simulate_day
from support.cli import start_cli
from test_postgres_log import (
    TABLES,
    changes,
    execute,
    files,
    first_key,
    log_run,
    slots,
    source_state,
)

LATENCY = 1.0


def streaming(dsn: str) -> bool:
    """Whether a walsender is reading the database's slot (the stream is past its initial load)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select bool_or(active) from pg_replication_slots where database = current_database()")
        return bool(row.fetchone()[0])  # type: ignore[index]


def wait_for(condition: object, timeout: float) -> float:
    """Seconds until `condition()` held; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stream_publishes_within_its_latency_and_stops_cleanly(
    stop: signal.Signals, postgres_server: PostgresCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dsn = fresh_database(postgres_server, "stream")
    request.addfinalizer(lambda: drop_slots(dsn))  # the session's cluster has room for 10 slots
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    lake = tmp_path / "lake"
    process = start_cli(
        "stream",
        "--lake",
        str(lake),
        "--source",
        "loyalty",
        "--tables",
        TABLES,
        "--latency",
        str(LATENCY),
        env={"LAGO_POSTGRES_DSN": dsn},
        stdout=None,
        new_session=True,
    )
    try:
        wait_for(lambda: len(files(lake, "clientes", "full-load")) == 1 and streaming(dsn), 60)
        key = first_key(dsn)
        execute(dsn, f'update public.clientes set "qtdePontos" = 1 where "idCliente" = \'{key}\'')
        seconds = wait_for(lambda: len(changes(lake, "clientes")) == 1, 30)
        print(f"commit-to-change-file latency: {seconds:.2f} s (--latency {LATENCY:g})")
        # the latency asked for, plus the time to write and publish the file on a busy machine
        assert seconds < LATENCY + 5, seconds
        execute(dsn, f'update public.clientes set "qtdePontos" = 2 where "idCliente" = \'{key}\'')
        os.killpg(process.pid, stop)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    assert "stream stopped" in stderr and "Traceback" not in stderr
    assert slots(dsn)[0][1] is not None
    # what the stream had not read is read by the next capture; nothing is published twice
    assert log_run(lake, dsn).returncode == 0
    assert [r["qtdePontos"] for r in changes(lake, "clientes")] == [1, 2]
    rows = {r["idCliente"]: r["qtdePontos"] for r in changes(lake, "clientes")}
    assert rows[key] == source_state(dsn, "clientes", "idCliente")[key][6] == 2
