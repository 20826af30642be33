"""Log mode, exactly once: a capture killed (SIGKILL) at each step between decoding the log and confirming the slot,
then run again, leaves the lake with the same change set as a lake whose captures were never killed — no change
lost, none twice — while the source keeps changing in between.

Two lakes follow one database, each through its own slot: `twin` is never killed, `lake` is killed once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
import yaml
from pgserver import PostgresCluster, drop_slots, fresh_database, simulate_day
from reliability_support import ROOT, Recorder, compare, ingest
from support.cli import run_cli, start_cli
from tcp_proxy import TcpProxy

from orchestration.local_postgres import temporary_cluster

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


# -- the connection lost mid-stream, the log removed, a transaction held open, a column added ------------------------


@pytest.fixture
def own_cluster(request: pytest.FixtureRequest) -> PostgresCluster:
    """A cluster of the test's own (~3 s), which the test may restart or reconfigure."""
    cluster = temporary_cluster()
    cluster.start()

    def remove() -> None:
        cluster.stop(graceful=False)
        shutil.rmtree(cluster.workdir, ignore_errors=True)

    request.addfinalizer(remove)
    return cluster


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.1)


def streaming(dsn: str) -> bool:
    """Whether a walsender is reading one of the database's slots."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select coalesce(bool_or(active), false) from pg_replication_slots").fetchone()
    return bool(row is not None and row[0])


def cdc_rows(lake: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in lake.glob("raw/loyalty/cdc/*/*.parquet"))


def start_stream(lake: Path, dsn: str) -> subprocess.Popen[str]:
    return start_cli(
        "stream",
        "--lake",
        str(lake),
        "--source",
        "loyalty",
        "--tables",
        "clientes,produtos",
        "--latency",
        "0.5",
        env={"LAGO_POSTGRES_DSN": dsn},
        stdout=None,
        new_session=True,
    )


FAULTS = {
    "restart": "Postgres restarted (fast shutdown)",
    "cut": "the connection reset by a TCP proxy",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_stream_that_loses_its_connection_reconnects_and_loses_nothing(
    fault: str, own_cluster: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    """`stream` losing its database mid-stream logs it and reconnects with backoff; what it had not confirmed is
    read again from the slot, each change once: the same change set as a lake that never lost its connection."""
    assert own_cluster.port is not None
    direct = own_cluster.create_database("lost")
    assert simulate_day(direct, "--scale", "50").returncode == 0
    twin, lake = tmp_path / "twin", tmp_path / "lake"
    with TcpProxy(own_cluster.port) as proxy:
        dsn = proxy.dsn(direct, own_cluster.port) if fault == "cut" else direct
        for target in (twin, lake):
            assert run(target, dsn).returncode == 0
        process = start_stream(lake, dsn)
        try:
            wait_for(lambda: streaming(direct), 60)
            changes(direct, 1)
            wait_for(lambda: cdc_rows(lake) == 12, 60)  # round 1 published by the stream
            if fault == "restart":
                own_cluster.stop(graceful=True)
                own_cluster.start()
            else:
                assert proxy.cut() >= 1
            changes(direct, 2)  # the source moves on while the stream is away
            wait_for(lambda: cdc_rows(lake) == 24, 90)  # ... and the same stream publishes it once back
            assert process.poll() is None
            os.killpg(process.pid, signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert process.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
        (warning,) = [line for line in stderr.splitlines() if "reconnecting in 1 s (attempt 1 of" in line]
        assert "slot lago_" in warning, warning
        rerun = run(lake, dsn)  # nothing left: the stream confirmed what it published
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert cdc_rows(lake) == 24
        assert run(twin, direct).returncode == 0
    truth, found = change_set(twin), change_set(lake)
    rows = compare(truth, found)
    report.record(
        f"postgres log: stream, {FAULTS[fault]} mid-stream",
        runs=4,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note="the stream reconnected (logged, with backoff): "
        + ("change set equal to a lake never interrupted" if truth == found else "change sets differ"),
    )
    assert sum(1 for row in truth if row[0] == "cdc") == 2 * 12
    assert found == truth


def verify_lost(lake: Path, dsn: str, table: str, project: Path | None = None) -> tuple[int, int, str]:
    """`verify`'s exit, the rows of the source the lake lacks or holds in another version, and its summary."""
    env = {"LAGO_POSTGRES_DSN": dsn} | ({"LAGO_PROJECT_DIR": str(project)} if project else {})
    result = run_cli("verify", f"loyalty.{table}", "--lake", str(lake), env=env)
    output = result.stdout + result.stderr[-1500:]
    line = next(line for line in output.splitlines() if line.startswith(f"loyalty.{table}: "))
    if ": equal, " in line:
        return result.returncode, 0, line
    counts = line.split("; ", 1)[1]
    return result.returncode, sum(int(p.split()[0]) for p in counts.split(", ") if "missing in source" not in p), line


def source_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select (select count(*) from public.clientes) + (select count(*) from public.produtos)")
        found = row.fetchone()
    assert found is not None
    return int(found[0])


def test_wal_removed_under_a_lagging_slot_heals_with_a_diff(
    own_cluster: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    """With `max_slot_wal_keep_size`, the server removes the log a slot nobody reads holds past it, and marks the
    slot `lost`; the next run takes a new slot and diffs every table against the lake, which then equals the
    source (`verify`)."""
    dsn = own_cluster.create_database("walgone")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("alter system set max_slot_wal_keep_size = '1MB'")
        conn.execute("select pg_reload_conf()")
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    lake = tmp_path / "lake"
    assert run(lake, dsn).returncode == 0
    changes(dsn, 1)  # no capture runs: the slot lags
    status = None
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table public.filler (n integer)")
        for _ in range(20):
            conn.execute("insert into public.filler select generate_series(1, 20000)")
            conn.execute("select pg_switch_wal()")
            conn.execute("checkpoint")
            row = conn.execute("select wal_status from pg_replication_slots").fetchone()
            status = row[0] if row else None
            if status == "lost":
                break
    assert status == "lost"
    healed = run(lake, dsn)
    assert healed.returncode == 0, healed.stderr[-3000:]
    assert "its write-ahead log was removed" in healed.stderr
    verdicts = [verify_lost(lake, dsn, table) for table in ("clientes", "produtos")]
    report.record(
        "postgres log: WAL removed under a lagging slot (wal_status lost), rerun",
        runs=2,
        expected=source_rows(dsn),
        lost=sum(lost for _, lost, _ in verdicts),
        note="healed with a new slot and a diff; verify: " + "; ".join(line[:60] for _, _, line in verdicts),
    )
    assert [(code, lost) for code, lost, _ in verdicts] == [(0, 0), (0, 0)], verdicts
    cdc = [r for r in change_set(lake) if r[0] == "cdc"]
    # the diff sees round 1's net effect: two keys updated (their last version; the third is deleted), one
    # inserted, one deleted, and produtos 1 renamed; the versions in between were in the removed log
    assert len(cdc) == 2 + 1 + 1 + 1, cdc


def test_a_transaction_open_across_a_run_is_published_whole_by_the_next(
    postgres_server: PostgresCluster, tmp_path: Path, report: Recorder, request: pytest.FixtureRequest
) -> None:
    dsn = fresh_database(postgres_server, "held")
    request.addfinalizer(lambda: drop_slots(dsn))
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    twin, lake = tmp_path / "twin", tmp_path / "lake"
    for target in (twin, lake):
        assert run(target, dsn).returncode == 0
    held = psycopg.connect(dsn)  # a transaction left open while others commit and a capture runs
    held.execute("insert into public.clientes values ('held-1', 1, 0, 0, null, 0, 5, '2024-01-01', '2024-01-01')")
    held.execute('update public.produtos set "DescNomeProduto" = \'held\' where "IdProduto" = 2')
    changes(dsn, 1)
    during = run(lake, dsn)
    assert during.returncode == 0, during.stderr[-3000:]
    published = change_set(lake)
    held_rows = (("idCliente", "held-1"), ("DescNomeProduto", "held"))
    assert not any(item in row for row in published for item in held_rows)  # none of it, not part of it
    assert sum(1 for row in published if row[0] == "cdc") == 12
    held.commit()
    held.close()
    changes(dsn, 2)
    after = run(lake, dsn)
    assert after.returncode == 0, after.stderr[-3000:]
    assert run(twin, dsn).returncode == 0
    truth, found = change_set(twin), change_set(lake)
    rows = compare(truth, found)
    report.record(
        "postgres log: a transaction open across a run, committed, rerun",
        runs=4,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note="not published while open, whole by the next run: "
        + ("change set equal to a lake that ran once" if truth == found else "change sets differ"),
    )
    assert sum(1 for row in truth if row[0] == "cdc") == 2 * 12 + 2
    assert found == truth
    assert [sum(1 for row in found if item in row) for item in held_rows] == [1, 1]


SOURCES_YAML = Path("models/bronze/loyalty/_loyalty__sources.yml")


def cdc_of(lake: Path, table: str) -> list[dict[str, Any]]:
    return [r for p in sorted(lake.glob(f"raw/loyalty/cdc/{table}/*.parquet")) for r in pq.read_table(p).to_pylist()]


def declare_weight(project: Path) -> None:
    path = project / SOURCES_YAML
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    (table,) = (t for s in document["sources"] for t in s["tables"] if t["name"] == "produtos")
    table["columns"].append({"name": "weight", "data_type": "integer", "description": "Weight in grams."})
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")


def test_a_column_added_between_two_changes_is_refused_until_declared(
    postgres_server: PostgresCluster, tmp_path: Path, report: Recorder, request: pytest.FixtureRequest
) -> None:
    """`ALTER TABLE ... ADD COLUMN` between two changes of one run: the run publishes nothing (not the change before
    it either) and names the column and the fix; once the column is declared, the next run publishes both changes,
    the one before the column with it NULL."""
    dsn = fresh_database(postgres_server, "ddl")
    request.addfinalizer(lambda: drop_slots(dsn))
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    project, lake = tmp_path / "project", tmp_path / "lake"
    (project / SOURCES_YAML).parent.mkdir(parents=True)
    shutil.copy(ROOT / SOURCES_YAML, project / SOURCES_YAML)
    env: dict[str, str | None] = {"LAGO_POSTGRES_DSN": dsn, "LAGO_PROJECT_DIR": str(project)}
    assert ingest(lake, *LOG, env=env).returncode == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('update public.produtos set "DescNomeProduto" = \'before\' where "IdProduto" = 1')
        conn.execute("alter table public.produtos add column weight integer")
        conn.execute('update public.produtos set weight = 3 where "IdProduto" = 2')
        conn.execute(
            'update public.clientes set "qtdePontos" = 77 where "idCliente" = (select min("idCliente") '
            "from public.clientes)"
        )
    before = sorted(str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file())
    refused = ingest(lake, *LOG, env=env)
    assert refused.returncode == 3, refused.stderr[-3000:]
    assert "table loyalty.produtos: column weight was added" in refused.stderr
    assert "declare column weight (with its data_type) in models/bronze/loyalty/_loyalty__sources.yml" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted(str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file()) == before

    declare_weight(project)
    resumed = ingest(lake, *LOG, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    produtos = [
        r for p in sorted(lake.glob("raw/loyalty/cdc/produtos/*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    assert [(r["_cdc_operation"], r["IdProduto"], r["weight"]) for r in produtos] == [("U", 1, None), ("U", 2, 3)]
    assert produtos[0]["DescNomeProduto"] == "before"
    clientes = cdc_of(lake, "clientes")
    assert [r["qtdePontos"] for r in clientes] == [77]
    verdicts = [verify_lost(lake, dsn, table, project) for table in ("clientes", "produtos")]
    report.record(
        "postgres log: ADD COLUMN between two changes of a run, refused, declared, rerun",
        runs=3,
        expected=3,
        lost=3 - len(produtos) - len(clientes) + sum(lost for _, lost, _ in verdicts),
        note="refused naming the column, nothing published; after declaring it both changes published, "
        "the earlier with the column NULL",
    )
    assert [(code, lost) for code, lost, _ in verdicts] == [(0, 0), (0, 0)], verdicts
