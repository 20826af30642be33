"""Engines: the same captures built from scratch by `dbt build` on DuckDB (`dev`) and on Spark + Delta (`spark`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.common import PYTHON, ROOT, Result, dbt_executable, measure

CAPTURES = 3


def suite_engines(repeats: int, work: Path, scale: int) -> list[Result]:
    folder = work / "engines"
    shutil.rmtree(folder, ignore_errors=True)
    lake = folder / "lake"
    for _ in range(CAPTURES):
        subprocess.run([PYTHON, "-m", "ingestion", "run", "--lake", str(lake), "--scale", str(scale)], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    subprocess.run(["bash", "scripts/spark_jars.sh"], cwd=ROOT, check=True, capture_output=True)
    results = []
    for target in ("dev", "spark"):
        state = folder / target
        env = {
            "LAKE_URI": str(lake),
            "DUCKDB_PATH": str(state / "warehouse.duckdb"),
            "SPARK_WAREHOUSE_DIR": str(state / "spark"),
        }

        def fresh(state: Path = state) -> None:
            shutil.rmtree(state, ignore_errors=True)
            state.mkdir(parents=True)

        target_path = str(folder / f"target_{target}")
        command = [
            dbt_executable(),
            "build",
            "--target",
            target,
            "--target-path",
            target_path,
            "--log-path",
            target_path,
        ]
        seconds, rss, _, inner = measure(["command", *command], repeats, prepare=fresh, env=env)
        note = f"dbt build from scratch, {CAPTURES} captures of every table (RSS: dbt's process and, on Spark, its JVM)"
        results.append(Result("engines", target, scale, seconds, rss, repeats, note, inner))
        print(f"engines {target:<6} {seconds:8.2f} s  {rss:8.0f} MB", flush=True)
    return results
