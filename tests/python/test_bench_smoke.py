"""The benchmark suite runs end to end at a tiny scale (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LOYALTY = ("clientes", "produtos", "transacoes", "transacao_produto")
SILVER = ("customers", "products", "transactions", "transaction_products")
# what bench/dag_floor.py writes; its rows must be the incremental build's
FLOOR_TABLES = (
    *(f"bronze.bronze_loyalty__{table}" for table in LOYALTY),
    *(f"history.history_loyalty__{table}" for table in LOYALTY),
    *(f"silver.silver_loyalty__{table}" for table in SILVER),
    "gold.gold_points_daily_cube",
    "gold.gold_points_monthly_report",
    "gold.gold_customer_churn_summary",
    "bronze.bronze_processed_files",
)
BUILD_TIMES = ("_loaded_at", "merged_at")  # when a row was written, not what it holds


def test_bench_regenerates_table_and_plots_at_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--scales", "1000,3000", "--repeats", "1", "--suites", "capture,cdc,bronze",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((out / "results.json").read_text())
    cases = {(r["suite"], r["case"], r["rows"]) for r in figures["results"]}
    for rows in (1000, 3000):
        assert {("cdc", "project", rows), ("cdc", "duckdb_join", rows), ("cdc", "pandas_hash", rows)} <= cases
        capture = {"capture", "floor", "floor, key + row hash", "reference"}
        assert {("capture", case, rows) for case in capture} <= cases
        # the capture, the floor and the reference found the same changes
        found = {r["note"] for r in figures["results"] if r["case"] in capture and r["rows"] == rows}
        assert len(found) == 1 and found != {""}, found
        # so did the capture and the floor of the wide table and of the composite key
        for shape in ("50 columns", "3-column key"):
            pair = {r["case"]: r["note"] for r in figures["results"] if r["case"].endswith(shape) and r["rows"] == rows}
            assert set(pair) == {f"capture, {shape}", f"floor, {shape}"}, pair
            assert len(set(pair.values())) == 1 and pair[f"floor, {shape}"] == f"{rows // 50:,} changes", pair
        assert {("bronze", "incremental", rows), ("bronze", "full-refresh", rows)} <= cases
    # every diff found the same changes as the two baselines
    notes = {(r["rows"], r["note"]) for r in figures["results"] if r["suite"] == "cdc"}
    assert len(notes) == 2
    report = (out / "results.md").read_text()
    assert "| cdc | project | 1,000 |" in report
    assert "| CSV capture, 3-column key, within 1.5x of its floor at 3,000 rows |" in report
    for plot in ("cdc.png", "bronze.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_dag_bench_compares_incremental_and_full_builds_at_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench.dag", "--scales", "500", "--changed-customers", "40"]
    command += ["--cadence", "2", "--cadence-scale", "300"]
    result = subprocess.run([*command, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((out / "dag.json").read_text())
    cases = {(r["suite"], r["case"]) for r in figures}
    assert cases == {
        ("dag", "dbt parse"),
        ("dag", "no new file"),
        ("dag", "incremental"),
        ("dag", "full-refresh"),
        ("dag", "scheduler build"),
        ("dag", "bare DuckDB"),
        ("cadence", "after 2 captures"),
    }
    for figure in figures:
        if figure["case"] == "bare DuckDB":  # no dbt: no node, no start-up of dbt's
            continue
        if figure["case"] != "dbt parse":
            assert "bronze" in figure["note"] and "tests" in figure["note"], figure["note"]
        # CPU seconds of dbt's process and its children: at least dbt's start-up
        assert figure["cpu_seconds"] is None or figure["cpu_seconds"] > 1.0, figure
    dag = {r["case"]: r for r in figures if r["suite"] == "dag"}
    assert all(dag[case]["cpu_seconds"] > 1.0 for case in dag if case != "bare DuckDB"), dag
    # with no new file every Bronze, history and Silver model keeps its last build (four tables: twelve models), and
    # the daily cube and monthly report; the capture of customers' changes runs their three and the monthly report
    # (it counts customers), a full refresh every model
    kept = {case: re.search(r"models kept (\d+) of (\d+)", dag[case]["note"]) for case in dag if case != "bare DuckDB"}
    assert kept["no new file"] and kept["no new file"].group(1) == "14", dag["no new file"]["note"]
    assert kept["incremental"] and kept["incremental"].group(1) == "10", dag["incremental"]["note"]
    assert kept["full-refresh"] and kept["full-refresh"].group(1) == "0", dag["full-refresh"]["note"]
    assert dag["bare DuckDB"]["cpu_seconds"] > 0, dag
    page = (out / "dag.md").read_text()
    assert "full refresh / incremental" in page
    assert "incremental build (40 changed customers) <= 2.5x `dbt parse` at 500" in page, page
    # against the same capture's work done by a bare DuckDB script (bench/dag_floor.py)
    assert "incremental build (40 changed customers) <= 2x a bare DuckDB script at 500" in page, page
    # the measured capture changed those customers and nothing else, at any scale
    state = json.loads(
        (out / "tmp" / "dag_500" / "lake" / "_ingestion" / "loyalty" / "clientes" / "state.json").read_text()
    )
    measured = state["captures"][-1]
    assert (measured["reader"], measured["inserts"], measured["updates"], measured["deletes"]) == ("csv", 0, 40, 0)
    assert dag["incremental"]["changed"] == 40 and dag["full-refresh"]["changed"] is None, dag
    # the scheduler's build in its kept dbt process, against a `dbt build` command
    assert "the scheduler's build in its kept dbt process / `dbt build`" in page, page
    assert_floor_writes_the_builds_rows(out / "tmp" / "dag_500", tmp_path / "floor.duckdb")


def assert_floor_writes_the_builds_rows(site: Path, floor: Path) -> None:
    """The bare DuckDB floor, run on the warehouse before the measured capture, leaves every table it writes with
    the rows the incremental build left (times of writing aside): it measures the same work."""
    shutil.copyfile(site / "before.duckdb", floor)
    result = subprocess.run(
        [sys.executable, "-m", "bench.dag_floor", str(floor), str(site / "lake")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 0, result.stdout
    with duckdb.connect(str(site / "after.duckdb"), read_only=True) as con:
        con.execute(f"attach '{floor}' as floor (read_only)")
        for table in FLOOR_TABLES:
            schema, name = table.split(".")
            columns = ", ".join(
                f'"{column}"'
                for (column,) in con.execute(
                    "select column_name from information_schema.columns where table_catalog = 'after'"
                    " and table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, name],
                ).fetchall()
                if column not in BUILD_TIMES
            )
            built = f"select {columns} from after.{table}"
            floored = f"select {columns} from floor.{table}"
            rows = con.execute(f"select count(*) from after.{table}").fetchone()
            assert rows is not None and rows[0] > 0, table
            for first, second in ((built, floored), (floored, built)):
                extra = con.execute(f"{first} except all {second}").fetchall()
                assert extra == [], (table, first.split(" from ")[1], extra[:5])


def test_the_dag_report_bounds_flatness_by_the_bare_scripts_own_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound is this run's figures: the 1e5 build plus what the bare script grows by, over the 1e5 build."""
    monkeypatch.syspath_prepend(str(ROOT))  # bench/ is run from the repository, not installed
    from bench.common import Result
    from bench.dag import report

    def case(name: str, rows: int, cpu: float) -> Result:
        return Result("dag", name, rows, cpu, 100.0, 1, cpu_seconds=cpu)

    figures = [
        case("dbt parse", 100_000, 2.0),
        case("incremental", 100_000, 7.0),
        case("bare DuckDB", 100_000, 1.0),
        case("incremental", 10_000_000, 20.0),
        case("bare DuckDB", 10_000_000, 8.0),
    ]
    bound = [line for line in report(figures) if line.startswith("- the bare script grows")]
    # (7 + 7) / 7 for this run's build, (5 + 7) / 5 for a build at the 1e5 target (2.5 x 2.0)
    assert bound == [
        "- the bare script grows by 7.00 CPU-s from 100,000 to 10,000,000 customers: an incremental build that grew"
        " by only that much would be 2.00x at 1e7 / 1e5 (this run's 1e5 build), and a build at the 1e5 target"
        " (2.5x `dbt parse`) 2.40x"
    ]
    assert not [line for line in report(figures[:3]) if line.startswith("- the bare script grows")]
