"""Log mode, exactly once: a capture killed (SIGKILL) at each step between decoding the log and confirming the slot,
then run again, leaves the lake with the same change set as a lake whose captures were never killed — no change
lost, none twice — while the source keeps changing in between.

Two lakes follow one database, each through its own slot: `twin` is never killed, `lake` is killed once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from pgserver import PostgresCluster, drop_slots, fresh_database, simulate_day
from reliability_support import Recorder, compare, ingest

SIGKILLED = -9
LOG = ("--source", "loyalty", "--from", "postgres", "--mode", "log", "--tables", "clientes,produtos")

# where the process kills itself: before the change file is durable (staged, then decided), after it is published
# but before the state commits, after the state commits but before the slot is confirmed, and after
STEPS = {
    "after-stage-snapshot": "staged, not yet decided",
    "after-pending": "decided, change file not yet published",
    "after-publish": "change file durable, state not committed",
    "before-confirm": "state committed, slot not confirmed",
    "after-confirm": "slot confirmed",
}


def run(lake: Path, dsn: str, failpoint: str | None = None) -> Any:
    env: dict[str, str | None] = {"LAGO_POSTGRES_DSN": dsn, "LAGO_FAILPOINT": failpoint}
    return ingest(lake, *LOG, env=env)


def change_set(lake: Path) -> Counter[tuple[Any, ...]]:
    """Every published row; a full load's without its `_cdc_timestamp` (each lake's snapshot has its own time)."""
    rows: Counter[tuple[Any, ...]] = Counter()
    for path in sorted(lake.glob("raw/loyalty/*/*/*.parquet")):
        kind, table = path.parts[-3], path.parts[-2]
        for row in pq.read_table(path).to_pylist():
            if kind == "full-load":
                del row["_cdc_timestamp"]
            rows[(kind, table, *row.items())] += 1
    return rows


def changes(dsn: str, round_: int) -> None:
    """Several versions of a few keys, inserts and deletes, each statement a transaction of its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        keys = [str(r[0]) for r in conn.execute('select "idCliente" from public.clientes order by 1 limit 3')]
        for version in range(3):
            for key in keys:
                conn.execute(
                    'update public.clientes set "qtdePontos" = %s where "idCliente" = %s', (100 * round_ + version, key)
                )
        conn.execute(
            "insert into public.clientes values (%s, 1, 0, 0, null, 0, 5, '2024-01-01', '2024-01-01')",
            (f"round-{round_}",),
        )
        conn.execute('delete from public.clientes where "idCliente" = %s', (keys[-1],))
        conn.execute('update public.produtos set "DescNomeProduto" = %s where "IdProduto" = 1', (f"r{round_}",))


@pytest.mark.parametrize("step", list(STEPS))
def test_a_killed_log_capture_rerun_equals_one_never_killed(
    step: str, postgres_server: PostgresCluster, tmp_path: Path, report: Recorder, request: pytest.FixtureRequest
) -> None:
    dsn = fresh_database(postgres_server, "once")
    request.addfinalizer(lambda: drop_slots(dsn))  # the session's cluster has room for 10 slots
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    twin, lake = tmp_path / "twin", tmp_path / "lake"
    for target in (twin, lake):
        first = run(target, dsn)
        assert first.returncode == 0, first.stderr[-3000:]

    changes(dsn, 1)
    assert run(twin, dsn).returncode == 0
    killed = run(lake, dsn, step)
    assert killed.returncode == SIGKILLED, killed.stderr[-3000:]
    assert f"failpoint {step}" in killed.stderr

    changes(dsn, 2)  # the source moves on before the rerun
    assert run(twin, dsn).returncode == 0
    rerun = run(lake, dsn)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    truth, found = change_set(twin), change_set(lake)
    rows = compare(truth, found)
    report.record(
        f"postgres log: SIGKILL {step} ({STEPS[step]}), source changed, rerun",
        runs=3,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note="change set equal to a lake never killed" if truth == found else "change sets differ",
    )
    # per round: 9 updates, 1 insert and 1 delete of clientes and 1 update of produtos
    assert sum(1 for row in truth if row[0] == "cdc") == 2 * 12
    assert found == truth
    # and the next run finds nothing left to publish: the slot was confirmed past every change
    published = sorted(lake.glob("raw/loyalty/*/*/*.parquet"))
    assert run(lake, dsn).returncode == 0
    assert sorted(lake.glob("raw/loyalty/*/*/*.parquet")) == published
