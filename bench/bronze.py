"""Bronze: an incremental dbt run merging one capture's change file vs a --full-refresh of the same model.

For each scale: capture clientes on day 0 (full load) and build Bronze; capture day 1 (about 0.5% inserts,
1.5% updates and a few deletes); then time `dbt run` of the bronze model incrementally (from a copy of the
day-0 warehouse each time) and with `--full-refresh` (reading every file).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.common import PYTHON, ROOT, Result, dbt_executable, measure

MODEL = "bronze_loyalty__clientes"


def suite_bronze(scales: list[int], repeats: int, work: Path) -> list[Result]:
    results = []
    for scale in scales:
        folder = work / f"bronze_{scale}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        lake, warehouse, day0 = folder / "lake", folder / "wh.duckdb", folder / "day0.duckdb"
        target = folder / "target"
        env = {**os.environ, "LAKE_URI": str(lake), "DUCKDB_PATH": str(warehouse)}
        capture = [PYTHON, "-m", "ingestion", "run", "--lake", str(lake), "--tables", "clientes", "--scale", str(scale)]
        dbt_run = [dbt_executable(), "run", "--target", "dev", "--target-path", str(target), "--log-path", str(target)]
        subprocess.run(capture, cwd=ROOT, env=env, check=True, capture_output=True)
        subprocess.run([*dbt_run, "--select", f"{MODEL}"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(capture, cwd=ROOT, env=env, check=True, capture_output=True)
        shutil.copyfile(warehouse, day0)
        changes = sum(1 for _ in (lake / "raw/loyalty/cdc/clientes").glob("*.parquet"))
        assert changes == 1, "expected one change file"

        def restore(day0: Path = day0, warehouse: Path = warehouse) -> None:
            shutil.copyfile(day0, warehouse)

        env_vars = {"LAKE_URI": str(lake), "DUCKDB_PATH": str(warehouse)}
        incremental = measure(["command", *dbt_run, "--select", MODEL], repeats, prepare=restore, env=env_vars)
        full = measure(["command", *dbt_run, "--select", MODEL, "--full-refresh"], repeats, prepare=restore,
                       env=env_vars)  # fmt: skip
        for case, (seconds, rss, _, inner) in (("incremental", incremental), ("full-refresh", full)):
            results.append(Result("bronze", case, scale, seconds, rss, repeats, "dbt run of the bronze model", inner))
            print(f"bronze {case:<12} {scale:>12,} rows  {seconds:8.2f} s  {rss:8.0f} MB", flush=True)
    return results
