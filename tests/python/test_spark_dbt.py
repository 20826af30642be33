"""`dbt build --target spark` (Delta Lake) end to end, and the same tables as `dbt build --target dev` (DuckDB).

The simulator captures the sources several times; after the first captures both engines build from scratch,
after the next ones both build incrementally (Bronze merges new CDC files: updates, deletes, new keys), and then
every model and snapshot must hold the same rows on both engines. DuckDB's own suites check the rows against the
simulator's state; equality carries those checks over to Spark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from spark_support import REPO_ROOT, ensure_spark_jars, jars_dir, profile_spark_parameters

pytestmark = pytest.mark.dbt

CAPTURE_ROUNDS = (3, 2)  # captures before the first build, then before the incremental build
SIMULATOR_SCALE = "200"


def run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(command[:4])} ran over {timeout:.0f} s: {exc}")
    assert result.returncode == 0, f"{' '.join(command)}\n{(result.stdout + result.stderr)[-8000:]}"
    return result


def dbt(work: Path, env: dict[str, str], target: str) -> float:
    executable = str(Path(sys.executable).parent / "dbt")
    started = time.monotonic()
    paths = ["--target-path", str(work / f"target-{target}"), "--log-path", str(work / f"logs-{target}")]
    run([executable, "build", "--target", target, *paths], env, timeout=1200)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """Both engines built twice over the same growing lake; the wall time of each build."""
    work = tmp_path_factory.mktemp("cross-engine")
    ensure_spark_jars(jars_dir(profile_spark_parameters()))
    env = {
        **os.environ,
        "LAKE_URI": str(work / "lake"),
        "DUCKDB_PATH": str(work / "dev.duckdb"),
        "SPARK_WAREHOUSE_DIR": str(work / "spark"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    timings: dict[str, float] = {}
    for round_number, captures in enumerate(CAPTURE_ROUNDS):
        for _ in range(captures):
            capture = [sys.executable, "-m", "ingestion", "run", "--scale", SIMULATOR_SCALE, "--lake", env["LAKE_URI"]]
            run(capture, env, timeout=300)
        for target in ("dev", "spark"):
            timings[f"{target} build {round_number + 1}"] = dbt(work, env, target)
    return work, timings


def test_spark_builds_the_same_tables_as_duckdb(built: tuple[Path, dict[str, float]]) -> None:
    work, timings = built
    print("dbt build wall times (s):", {name: round(seconds, 1) for name, seconds in timings.items()})
    script = str(Path(__file__).resolve().parent / "cross_engine.py")
    manifest = str(work / "target-dev" / "manifest.json")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = run([sys.executable, script, manifest, str(work / "dev.duckdb"), str(work / "spark")], env, timeout=600)
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report, "no table to compare"
    assert any(name.startswith("gold.") for name in report), sorted(report)
    different = {name: table for name, table in report.items() if not table["equal"]}
    assert not different, json.dumps(different, indent=2)
    empty = sorted(name for name, table in report.items() if table["rows"][0] == 0)
    assert len(empty) < len(report) / 2, f"most tables are empty, the comparison proves little: {empty}"
