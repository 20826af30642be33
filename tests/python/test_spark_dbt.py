"""`dbt build --target spark` (Delta Lake) end to end, and the same tables as `dbt build --target dev` (DuckDB).

Six captures, both engines building after captures 2 and 6 only: a first build, then one incremental build over
four captures (Bronze merges new CDC files: updates, deletes, new keys; Silver reads Bronze's Change Data Feed; the
history derives every captured version from the lake's change log). The `loyalty` source is captured from a real
Postgres in log mode (`--mode log`), the database fed one simulator day per capture (`python -m ingestion.postgres
.simulate`); `hotmart` comes from the simulator. Before capture 4, statements a snapshot diff cannot see: one
customer updated three times in one transaction (three versions of one key in one change file at one commit time,
ordered by `_cdc_sequence` only) and another updated twice then deleted, each in a transaction of its own. Every
model, history included (`dbt_scd_id`, `dbt_valid_from`, `dbt_valid_to`), must hold the same rows on both engines;
DuckDB's history must be the change log itself, so Spark's is too; and both histories hold each of those versions.
Before the last capture, every transaction of the first month goes, lines and all: Gold's days and month of it
are left only through deletes, which only a change feed read as changes (not as the table) tells Gold.
Then a `--full-refresh` against a lake that does not exist must refuse and leave every table as it was. Spark
builds cost minutes: one module fixture builds.
The Spark builds are the README's command, `dbt build --target spark` run in a copy of the project with the quick
start's lake in `./lake` and no LAKE_URI: a relative lake must be the same folder on both engines. The last one is
verbatim, the project's unit tests included; the first leaves out the unit tests (SQL on fixed rows, whatever the
lake holds: seconds each on Spark, and once per engine is enough).
Apart, a small run over a lake where only `loyalty` was captured, in a folder whose path holds a quote: a declared
source with no file is an empty batch, a stray file is refused by name, a published file missing is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from deltalake import DeltaTable
from pgserver import PostgresCluster, drop_slots, fresh_database, simulate_day
from spark_support import (
    REPO_ROOT,
    ensure_spark_jars,
    jars_dir,
    profile_spark_parameters,
)
from support.cli import ingest
from support.dbt import Dbt, copy_project
from test_change_log import assert_history_is_the_change_log

pytestmark = [pytest.mark.dbt, pytest.mark.spark]

CAPTURES = 6
BUILT_AFTER = (2, 6)  # builds after these captures only: the history must still hold every captured version
SIMULATOR_SCALE = "2000"  # enough customers that the simulator deletes some between captures
# `loyalty` from the database in log mode (the simulator writes its days there), `hotmart` from the simulator
LOG_CAPTURE = ("--source", "loyalty", "--from", "postgres", "--mode", "log")
SIMULATED_CAPTURE = ("--source", "hotmart", "--scale", SIMULATOR_SCALE)
# before this capture (between the two builds), changes a snapshot diff cannot see; points above the simulator's
# (0 to 4999) mark their versions
UNSEEN_BEFORE = 4
ONE_COMMIT_POINTS = (5011, 5012, 5013)  # one customer, one transaction: three versions at one commit time
OWN_COMMIT_POINTS = (5021, 5022)  # another customer, a transaction each, then deleted
# each marked version: customer, operation, points, whether it is valid for no time (a later one at its commit time)
UNSEEN_VERSIONS = """
    select idCliente, _cdc_operation, qtdePontos, coalesce(dbt_valid_to = dbt_valid_from, false) as valid_for_no_time
    from history.history_loyalty__clientes
    where qtdePontos > 5000
    order by idCliente, dbt_valid_from, _cdc_sequence
"""
# the README's Spark command runs with none of these set: the profile's defaults, relative to the project root
README_UNSET = (
    "LAKE_URI",
    "SPARK_WAREHOUSE_DIR",
    "DUCKDB_PATH",
    "DBT_PROJECT_DIR",
    "DBT_PROFILES_DIR",
    "DBT_TARGET_PATH",
    "DBT_LOG_PATH",
)


def run(
    command: list[str], env: dict[str, str], timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(command[:4])} ran over {timeout:.0f} s: {exc}")
    if check:
        assert result.returncode == 0, f"{' '.join(command)}\n{(result.stdout + result.stderr)[-8000:]}"
    return result


def spark_site(work: Path, lake: Path, warehouse: Path, target: str = "spark", database: Path | None = None) -> Dbt:
    """dbt on `target` writing under `work`, Spark's tables and metastore under `warehouse`."""
    env = {"SPARK_WAREHOUSE_DIR": str(warehouse), "SPARK_LOCAL_IP": "127.0.0.1"}
    return Dbt.at(work, lake, database=database, target=target, env=env)


def dbt(
    site: Dbt, verb: str, *args: str, timeout: float = 1500, check: bool = True
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    try:
        result = site(verb, *args, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"dbt {verb} --target {site.target} ran over {timeout:.0f} s: {exc}")
    if check:
        assert result.returncode == 0, f"dbt {verb} {' '.join(args)}\n{(result.stdout + result.stderr)[-8000:]}"
    return time.monotonic() - started, result


def project_copy(work: Path) -> Path:
    """The checkout the README's Spark command runs in: lake `./lake`, Spark warehouse `./warehouse/spark`."""
    return work / "project"


def spark_warehouse(work: Path) -> Path:
    return project_copy(work) / "warehouse" / "spark"


def readme_site(work: Path) -> Dbt:
    """`dbt build --target spark` as the README has it: in the project's folder, nothing but the defaults."""
    project = copy_project(project_copy(work))
    # what `scripts/spark_jars.sh` leaves in a checkout (the profile names the folder relative to it)
    (project / ".spark-jars").symlink_to(jars_dir(profile_spark_parameters()), target_is_directory=True)
    env: dict[str, str | None] = dict.fromkeys(README_UNSET)
    return Dbt.at(work / "dbt-spark", project / "lake", project=project, target="spark", env=env)


def compare_engines(work: Path, queries: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every table of both warehouses, row by row, and the rows of each query on each engine
    (tests/python/cross_engine.py, in its own process)."""
    script = str(Path(__file__).resolve().parent / "cross_engine.py")
    manifest = str(work / "dbt-dev" / "target" / "manifest.json")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    warehouses = [str(work / "dev.duckdb"), str(spark_warehouse(work))]
    result = run([sys.executable, script, manifest, *warehouses, json.dumps(queries)], env, timeout=600)
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report["tables"], report["queries"]


def assert_engines_equal(report: dict[str, Any]) -> None:
    assert report, "no table to compare"
    assert any(name.startswith("gold.") for name in report), sorted(report)
    different = {name: table for name, table in report.items() if not table["equal"]}
    assert not different, json.dumps(different, indent=2)
    empty = sorted(name for name, table in report.items() if table["rows"][0] == 0)
    assert len(empty) < len(report) / 2, f"most tables are empty, the comparison proves little: {empty}"


def write_unseen_changes(dsn: str) -> list[str]:
    """The changes of UNSEEN_VERSIONS, into the database's first two customers; their keys."""
    with psycopg.connect(dsn) as conn:
        keys = [str(row[0]) for row in conn.execute('select "idCliente" from clientes order by 1 limit 2')]
    assert len(keys) == 2, keys
    update = 'update clientes set "qtdePontos" = %s where "idCliente" = %s'
    with psycopg.connect(dsn) as conn, conn.transaction():
        for points in ONE_COMMIT_POINTS:
            assert conn.execute(update, (points, keys[0])).rowcount == 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        for points in OWN_COMMIT_POINTS:
            assert conn.execute(update, (points, keys[1])).rowcount == 1
        assert conn.execute('delete from clientes where "idCliente" = %s', (keys[1],)).rowcount == 1
    return keys


def empty_first_month(dsn: str) -> int:
    """Deletes every transaction (and its lines) of the database's first month of transactions, so the cube's days
    and the report's month of it are left only through deletes; how many transactions it deleted."""
    month = 'left("DtCriacao", 7) = (select min(left("DtCriacao", 7)) from transacoes)'
    with psycopg.connect(dsn) as conn, conn.transaction():
        ids = f'select "IdTransacao" from transacoes where {month}'
        conn.execute(f'delete from transacao_produto where "IdTransacao" in ({ids})')
        return conn.execute(f"delete from transacoes where {month}").rowcount


# the work folder, each build's wall time, the keys of the customers changed unseen
Built = tuple[Path, dict[str, float], list[str]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresCluster) -> Built:
    """Six captures, both engines built after captures 2 and 6 only; the wall time of each build and the keys of
    the customers changed unseen. Spark builds with the README's command (relative lake, cwd = the project);
    DuckDB reads the same lake by its absolute path."""
    work = tmp_path_factory.mktemp("cross-engine")
    ensure_spark_jars(jars_dir(profile_spark_parameters()))
    spark = readme_site(work)
    lake = project_copy(work) / "lake"
    sites = {"dev": Dbt.at(work / "dbt-dev", lake, database=work / "dev.duckdb"), "spark": spark}
    timings: dict[str, float] = {}
    dsn = fresh_database(postgres_server, "spark")
    try:
        keys = capture_and_build(lake, dsn, sites, timings)
    finally:
        drop_slots(dsn)  # the session's cluster has room for few slots, and one nobody reads keeps its WAL
    assert spark.command("build")[1:] == ["build", "--target", "spark"]
    assert "LAKE_URI" not in spark.env
    # the README's command writes its artefacts where a user's would: the project's target/
    results = json.loads((spark.project / "target" / "run_results.json").read_text(encoding="utf-8"))["results"]
    unit_tests = [result for result in results if result["unique_id"].startswith("unit_test.")]
    assert len(unit_tests) >= 10 and {result["status"] for result in unit_tests} == {"pass"}, unit_tests
    return work, timings, keys


def capture_and_build(lake: Path, dsn: str, sites: dict[str, Dbt], timings: dict[str, float]) -> list[str]:
    """The captures and builds of `built`; the keys of the customers changed unseen."""
    keys: list[str] = []
    spark = sites["spark"]
    for number in range(1, CAPTURES + 1):
        day = simulate_day(dsn, "--scale", SIMULATOR_SCALE)
        assert day.returncode == 0, day.stderr[-3000:]
        if number == UNSEEN_BEFORE:
            keys = write_unseen_changes(dsn)
        if number == CAPTURES:
            # after the simulator's last day, so no later day writes them back
            assert empty_first_month(dsn) > 0
        ingest(lake, *LOG_CAPTURE, env={"LAGO_POSTGRES_DSN": dsn}, check=True)
        ingest(lake, *SIMULATED_CAPTURE, check=True)
        if number in BUILT_AFTER:
            for target, site in sites.items():
                cwd = spark.project if target == "spark" else None
                args: tuple[str, ...] = ()
                if target == "spark" and number == BUILT_AFTER[-1]:
                    # the README's command as a user runs it, the project's unit tests included: once on Spark
                    site = site.with_unit_tests()
                elif target == "spark":
                    # Spark's first build only lays down the state the README's incremental build merges into: the
                    # data tests (a fifth of this file's time on 2 cores) run on Spark's final state, which must
                    # equal DuckDB's, and DuckDB's build runs them on this first state too
                    args = ("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")
                started = time.monotonic()
                result = site.build(*args, cwd=cwd)
                timings[f"{target} build after capture {number}"] = time.monotonic() - started
                assert result.returncode == 0, f"{site.command('build')}\n{(result.stdout + result.stderr)[-8000:]}"
    return keys


def test_spark_builds_the_same_tables_as_duckdb(built: Built) -> None:
    work, timings, (one_commit, own_commits) = built
    print("dbt build wall times (s):", {name: round(seconds, 1) for name, seconds in timings.items()})
    report, queries = compare_engines(work, {"unseen": UNSEEN_VERSIONS})
    assert_engines_equal(report)
    # the versions a snapshot diff cannot see, each in both histories: the one transaction's three at its commit
    # time (the first two valid for no time), the other customer's two updates and its delete (filled with its last
    # row: the log sends only the key)
    versions = {
        one_commit: [["U", points, points != ONE_COMMIT_POINTS[-1]] for points in ONE_COMMIT_POINTS],
        own_commits: [*(["U", points, False] for points in OWN_COMMIT_POINTS), ["D", OWN_COMMIT_POINTS[-1], False]],
    }
    unseen = [[key, *version] for key in sorted(versions) for version in versions[key]]
    assert queries["unseen"] == {"duckdb": unseen, "spark": unseen}
    # the history is compared too, and holds more versions than Bronze holds rows: builds rarer than captures
    # lost none of them (DuckDB's history is checked against the change log below)
    for table in ("clientes", "produtos", "transacoes", "transacao_produto"):
        history, bronze = report[f"history.history_loyalty__{table}"], report[f"bronze.bronze_loyalty__{table}"]
        assert history["rows"][1] >= bronze["rows"][1] > 0, (table, history["rows"], bronze["rows"])
    assert report["history.history_loyalty__clientes"]["rows"][1] > report["bronze.bronze_loyalty__clientes"]["rows"][1]
    with duckdb.connect(str(work / "dev.duckdb"), read_only=True) as con:
        assert_history_is_the_change_log(con, str(project_copy(work) / "lake"))
        deleted = con.execute("select count(*) from history.history_loyalty__clientes where dbt_is_deleted = 'True'")
        assert (deleted.fetchone() or (0,))[0] > 0, "the scenario must delete customers"


def test_full_refresh_against_a_missing_lake_refuses_on_spark(built: Built) -> None:
    """A mistyped LAKE_URI with --full-refresh fails, says nothing was changed, and every table is as it was."""
    work, _, _ = built
    tables = spark_warehouse(work) / "tables"
    before = files_of(tables)
    assert sum(1 for path in before if "/_delta_log/" in path) > 20, "the built warehouse holds few Delta commits"
    site = spark_site(work / "refused", work / "no-such-lake", spark_warehouse(work))
    _, result = dbt(site, "build", "--full-refresh", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-6000:]
    assert "Nothing was changed" in output, output[-6000:]
    assert not (work / "no-such-lake").exists(), "the build created the missing lake"
    # a Delta table changes only by a commit, a new file under its _delta_log: every data and log file as it was
    # (name, size, modification time) is every table as it was, with no second Spark session to read them
    assert files_of(tables) == before


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder`: its path relative to it, its size and modification time."""
    return {
        path.relative_to(folder).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_a_lake_with_a_quote_in_its_path_on_spark(tmp_path: Path) -> None:
    """Only `loyalty` captured, into `o'brien lake`: Hotmart's Bronze models build, empty, instead of PATH_NOT_FOUND;
    Bronze reads the lake through its quoted path; a stray file named with a quote and a published file that is
    gone are each refused by name."""
    ensure_spark_jars(jars_dir(profile_spark_parameters()))
    lake = tmp_path / "o'brien lake"
    site = spark_site(tmp_path, lake, tmp_path / "spark")
    ingest(lake, "--source", "loyalty", "--scale", "20", check=True)
    assert not (lake / "raw" / "hotmart").exists()
    full_loads = lake / "raw" / "loyalty" / "full-load"
    stray = lake / "raw" / "loyalty" / "cdc" / "produtos" / "produtos_x'); drop table x; --.parquet"
    stray.parent.mkdir(parents=True)
    shutil.copy(next((full_loads / "produtos").glob("*.parquet")), stray)
    missing = next((full_loads / "transacoes").glob("*.parquet"))
    missing.unlink()
    loyalty = ("bronze_loyalty__clientes", "bronze_loyalty__produtos", "bronze_loyalty__transacoes")
    # Hotmart's Bronze models only (what reads the lake), not the Silver and Gold built on them
    _, result = dbt(site, "run", "--select", "source:hotmart+1", *loyalty, timeout=900, check=False)
    assert result.returncode != 0
    # a failure before the first model (the session, the on-run-start hooks) writes no run results: show dbt's words
    assert (site.target_path / "run_results.json").exists(), (result.stdout + result.stderr)[-8000:]
    results = {item["unique_id"].split(".")[-1]: item for item in site.artifact("run_results.json")["results"]}
    bronze = {name: item["status"] for name, item in results.items() if name.startswith("bronze_hotmart__")}
    assert len(bronze) == 3 and set(bronze.values()) == {"success"}, results
    assert results["bronze_loyalty__clientes"]["status"] == "success", results["bronze_loyalty__clientes"]
    assert results["bronze_loyalty__produtos"]["status"] == "error"
    assert f"raw/loyalty/cdc/produtos/{stray.name}" in results["bronze_loyalty__produtos"]["message"]
    assert results["bronze_loyalty__transacoes"]["status"] == "error"
    assert f"raw/loyalty/full-load/transacoes/{missing.name}" in results["bronze_loyalty__transacoes"]["message"]
    state = json.loads((lake / "_ingestion" / "loyalty" / "clientes" / "state.json").read_text())
    # read with delta-rs rather than a second JVM (14 of this test's 49 s when run alone): Spark keeps a schema's
    # managed Delta tables in <warehouse>/<schema>.db/<table>/, and a table it never created has no folder there
    bronze = tmp_path / "spark" / "tables" / "bronze.db"
    held = DeltaTable(str(bronze / "bronze_loyalty__clientes")).to_pyarrow_dataset().count_rows()
    assert held == state["captures"][-1]["snapshot_rows"] and held > 0
    assert not (bronze / "bronze_loyalty__produtos").exists(), "a refused model left a table behind"
