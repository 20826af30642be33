"""Quick start: the README's default data built by `dbt build` on DuckDB (`dev`) and on Spark + Delta (`spark`).

The data is what `python -m ingestion` captures (every source's simulator, one day, default scale). Each engine
builds it from scratch, then, after one more capture, incrementally: the two builds a user waits for every day.
Wall times include each engine's start-up (Spark's JVM), as a user sees them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.common import PYTHON, ROOT, Result, dbt_executable, measure_figures

# (case label, dbt target, environment): Spark also as the profile was before three of its choices, each choice's
# baseline measured in the same run: the JVM flags before it reserved a code cache a build fits in, Spark's
# default code generation (projections compiled per task) before the profile made them interpreted, and Spark's
# adaptive query execution (each query planned again after each stage) before the profile turned it off
VARIANTS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("dev", "dev", {}),
    ("spark", "spark", {}),
    ("spark, 48 MB code cache", "spark", {"SPARK_JVM_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}),
    ("spark, generated code", "spark", {"SPARK_CODEGEN_FACTORY_MODE": "FALLBACK"}),
    ("spark, adaptive execution", "spark", {"SPARK_ADAPTIVE_EXECUTION": "true"}),
)


def _capture(lake: Path, scale: int) -> None:
    command = [PYTHON, "-m", "ingestion", "run", "--lake", str(lake), "--scale", str(scale)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)


def suite_quickstart(repeats: int, work: Path, scale: int) -> list[Result]:
    folder = work / "quickstart"
    shutil.rmtree(folder, ignore_errors=True)
    first_day = folder / "lake-day-0"
    _capture(first_day, scale)
    subprocess.run(["bash", "scripts/spark_jars.sh"], cwd=ROOT, check=True, capture_output=True)
    results = []
    for label, target, variant_env in VARIANTS:
        state = folder / label.replace(" ", "_").replace(",", "")
        lake = state / "lake"
        target_path = str(folder / f"target_{state.name}")
        build = [dbt_executable(), "build", "--target", target, "--target-path", target_path, "--log-path", target_path]
        env = {
            "LAKE_URI": str(lake),
            "DUCKDB_PATH": str(state / "warehouse.duckdb"),
            "SPARK_WAREHOUSE_DIR": str(state / "spark"),
            **variant_env,
        }

        def fresh(state: Path = state, lake: Path = lake) -> None:
            shutil.rmtree(state, ignore_errors=True)
            state.mkdir(parents=True)
            shutil.copytree(first_day, lake)

        def built_then_captured(build: list[str] = build, env: dict[str, str] = env, lake: Path = lake) -> None:
            # the state a daily build starts from: yesterday's warehouse and one new capture in its own lake
            fresh()
            subprocess.run(build, cwd=ROOT, check=True, capture_output=True, env={**os.environ, **env})
            _capture(lake, scale)

        for case, prepare in (("from scratch", fresh), ("incremental", built_then_captured)):
            figures = measure_figures(["command", *build], repeats, prepare=prepare, env=env)
            seconds, rss, cpu = figures.seconds, figures.peak_rss_mb, figures.cpu_seconds
            note = f"dbt build {case} on `python -m ingestion`'s data (RSS, CPU: dbt's process and, on Spark, its JVM)"
            results.append(
                Result("quickstart", f"{label} {case}", scale, seconds, rss, repeats, note, figures.inner_seconds, cpu)
            )
            print(f"quickstart {label:<24} {case:<13} {seconds:8.2f} s {cpu:8.2f} CPU-s {rss:8.0f} MB", flush=True)
    return results
