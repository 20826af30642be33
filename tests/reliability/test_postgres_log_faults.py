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


def final_state(lake: Path) -> dict[tuple[str, Any], dict[str, Any]]:
    """Each table's rows as its change log leaves them (the latest change of each key, deletes dropped)."""
    latest: dict[tuple[str, Any], dict[str, Any]] = {}
    rows = []
    for path in sorted(lake.glob("raw/loyalty/*/*/*.parquet")):
        rows.extend((path.parts[-2], r) for r in pq.read_table(path).to_pylist())
    for table, row in sorted(rows, key=lambda item: (item[0], item[1]["_cdc_timestamp"], item[1]["_cdc_sequence"])):
        latest[(table, list(row.values())[3])] = row  # the first declared column is each table's key
    return {
        key: {k: v for k, v in row.items() if not k.startswith("_cdc")}
        for key, row in latest.items()
        if row["_cdc_operation"] != "D"
    }


# a kill once every table's load is decided completes that load; a kill before redoes the undecided tables' loads
# from a new slot's snapshot, taken after the source changed: their versions in between are not in the lake (the
# first load of a table promises its state then, not its history before it)
INITIAL_STEPS = {"after-publish": "same change set", "after-pending": "same final state, nothing twice"}


@pytest.mark.parametrize("step", list(INITIAL_STEPS))
def test_a_log_capture_killed_during_its_initial_load_loads_once(
    step: str, postgres_server: PostgresCluster, tmp_path: Path, report: Recorder, request: pytest.FixtureRequest
) -> None:
    """Killed while publishing the full load from a new slot's snapshot: the rerun completes or redoes the load
    (a slot whose load never committed is taken again) and the changes after it follow exactly once."""
    dsn = fresh_database(postgres_server, "load")
    request.addfinalizer(lambda: drop_slots(dsn))
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    twin, lake = tmp_path / "twin", tmp_path / "lake"
    assert run(twin, dsn).returncode == 0
    killed = run(lake, dsn, step)
    assert killed.returncode == SIGKILLED, killed.stderr[-3000:]
    changes(dsn, 1)
    for target in (twin, lake):
        again = run(target, dsn)
        assert again.returncode == 0, again.stderr[-3000:]
    truth, found = change_set(twin), change_set(lake)
    same = final_state(twin) == final_state(lake)
    if step == "after-publish":
        rows = compare(truth, found)
    else:  # the redone loads: compared as final states, each change row once
        rows = compare(Counter(final_state(twin).keys()), Counter(final_state(lake).keys()))
    report.record(
        f"postgres log: SIGKILL {step} of the initial load, source changed, rerun",
        runs=2,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated + sum(n - 1 for n in found.values()),
        note=f"{INITIAL_STEPS[step]}: {'equal' if same else 'differs'} to a lake never killed",
    )
    assert same and max(found.values()) == 1
    if step == "after-publish":
        assert sum(1 for row in truth if row[0] == "cdc") == 12
        assert found == truth
    with psycopg.connect(dsn) as conn:
        (slots,) = conn.execute("select count(*) from pg_replication_slots").fetchone()  # type: ignore[misc]
    assert slots == 2  # one per lake: the killed run's slot was reused or replaced, never left behind
