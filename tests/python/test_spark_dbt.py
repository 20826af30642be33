"""`dbt build --target spark` (Delta Lake) end to end, and the same tables as `dbt build --target dev` (DuckDB).

The simulator captures the sources six times and both engines build after captures 2 and 6 only: a first build,
then one incremental build over four captures (Bronze merges new CDC files: updates, deletes, new keys; Silver
reads Bronze's Change Data Feed; the history derives every captured version from the lake's change log). Every
model, history included (`dbt_scd_id`, `dbt_valid_from`, `dbt_valid_to`), must hold the same rows on both engines,
and DuckDB's history must be the change log itself, so Spark's is too. Then a `--full-refresh` against a lake that
does not exist must refuse and leave every table as it was. Spark builds cost minutes: one module fixture builds.
Apart, a small run over a lake where only `loyalty` was captured: a declared source with no file is an empty batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from spark_support import REPO_ROOT, ensure_spark_jars, jars_dir, profile_spark_parameters
from support.cli import ingest
from support.dbt import Dbt
from test_change_log import assert_history_is_the_change_log

pytestmark = pytest.mark.dbt

CAPTURES = 6
BUILT_AFTER = (2, 6)  # builds after these captures only: the history must still hold every captured version
SIMULATOR_SCALE = "2000"  # enough customers that the simulator deletes some between captures
ENGINES = ("dev", "spark")


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


def compare_engines(work: Path) -> dict[str, Any]:
    """Every table of both warehouses, row by row (tests/python/cross_engine.py, in its own process)."""
    script = str(Path(__file__).resolve().parent / "cross_engine.py")
    manifest = str(work / "dbt-dev" / "target" / "manifest.json")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = run([sys.executable, script, manifest, str(work / "dev.duckdb"), str(work / "spark")], env, timeout=600)
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def assert_engines_equal(report: dict[str, Any]) -> None:
    assert report, "no table to compare"
    assert any(name.startswith("gold.") for name in report), sorted(report)
    different = {name: table for name, table in report.items() if not table["equal"]}
    assert not different, json.dumps(different, indent=2)
    empty = sorted(name for name, table in report.items() if table["rows"][0] == 0)
    assert len(empty) < len(report) / 2, f"most tables are empty, the comparison proves little: {empty}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """Six captures, both engines built after captures 2 and 6 only; the wall time of each build."""
    work = tmp_path_factory.mktemp("cross-engine")
    ensure_spark_jars(jars_dir(profile_spark_parameters()))
    lake = work / "lake"
    sites = {
        target: spark_site(work / f"dbt-{target}", lake, work / "spark", target, database=work / "dev.duckdb")
        for target in ENGINES
    }
    timings: dict[str, float] = {}
    for number in range(1, CAPTURES + 1):
        ingest(lake, "--scale", SIMULATOR_SCALE, check=True)
        if number in BUILT_AFTER:
            for target, site in sites.items():
                timings[f"{target} build after capture {number}"], _ = dbt(site, "build")
    return work, timings


def test_spark_builds_the_same_tables_as_duckdb(built: tuple[Path, dict[str, float]]) -> None:
    work, timings = built
    print("dbt build wall times (s):", {name: round(seconds, 1) for name, seconds in timings.items()})
    report = compare_engines(work)
    assert_engines_equal(report)
    # the history is compared too, and holds more versions than Bronze holds rows: builds rarer than captures
    # lost none of them (DuckDB's history is checked against the change log below)
    for table in ("clientes", "produtos", "transacoes", "transacao_produto"):
        history, bronze = report[f"snapshots.snp_loyalty__{table}"], report[f"bronze.bronze_loyalty__{table}"]
        assert history["rows"][1] >= bronze["rows"][1] > 0, (table, history["rows"], bronze["rows"])
    assert report["snapshots.snp_loyalty__clientes"]["rows"][1] > report["bronze.bronze_loyalty__clientes"]["rows"][1]
    with duckdb.connect(str(work / "dev.duckdb"), read_only=True) as con:
        assert_history_is_the_change_log(con, str(work / "lake"))
        deleted = con.execute("select count(*) from snapshots.snp_loyalty__clientes where dbt_is_deleted = 'True'")
        assert (deleted.fetchone() or (0,))[0] > 0, "the scenario must delete customers"


def test_full_refresh_against_a_missing_lake_refuses_on_spark(built: tuple[Path, dict[str, float]]) -> None:
    """A mistyped LAKE_URI with --full-refresh fails, says nothing was changed, and every table is as it was."""
    work, _ = built
    site = spark_site(work / "refused", work / "no-such-lake", work / "spark")
    _, result = dbt(site, "build", "--full-refresh", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-6000:]
    assert "Nothing was changed" in output, output[-6000:]
    assert not (work / "no-such-lake").exists(), "the build created the missing lake"
    assert_engines_equal(compare_engines(work))


def test_a_source_without_files_is_an_empty_batch_on_spark(tmp_path: Path) -> None:
    """Only `loyalty` captured, no `raw/hotmart`: the Hotmart models build, empty, instead of PATH_NOT_FOUND."""
    ensure_spark_jars(jars_dir(profile_spark_parameters()))
    site = spark_site(tmp_path, tmp_path / "lake", tmp_path / "spark")
    ingest(tmp_path / "lake", "--source", "loyalty", "--scale", "20", check=True)
    assert not (tmp_path / "lake" / "raw" / "hotmart").exists()
    dbt(site, "run", "--select", "source:hotmart+", "tag:lake_state", timeout=900)
    results = site.artifact("run_results.json")["results"]
    statuses = {result["unique_id"].split(".")[-1]: result["status"] for result in results}
    bronze = {name: status for name, status in statuses.items() if name.startswith("bronze_hotmart__")}
    assert bronze and set(bronze.values()) == {"success"}, statuses
