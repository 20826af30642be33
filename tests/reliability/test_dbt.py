"""dbt side: Bronze after an ingestion crash, and two `dbt build` on one DuckDB file.

Bronze is compared with the truth: for each loyalty table, the snapshot ingestion holds as current (the one its
state points to), column by column, as multisets. Every build uses the suite's `dbt_site` (conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
from reliability_support import Recorder, compare_bronze, ingest, snapshot_truth
from support.dbt import Dbt

from ingestion.catalog import load_catalog

pytestmark = pytest.mark.dbt

LOYALTY = ("--source", "loyalty", "--scale", "300")
BRONZE = ("--select", "path:models/bronze")


def bronze_versus_truth(site: Dbt, lake: Path) -> tuple[int, int, int]:
    """(rows expected, rows lost, rows duplicated) of Bronze against the current snapshot of every loyalty table."""
    tables = load_catalog().source("loyalty").tables.values()
    with site.connect() as con:
        result = compare_bronze(con, [(table, snapshot_truth(lake, table)) for table in tables])
    return result.expected, result.lost, result.duplicated


def test_bronze_after_a_crash_between_publish_and_state_equals_the_truth(
    dbt_site: Dbt, tmp_path: Path, report: Recorder
) -> None:
    """dbt builds while a crashed capture's file is published but not committed; the rerun commits it without
    publishing again; Bronze then holds exactly the current snapshot of every table."""
    lake = tmp_path / "lake"
    dbt_site.point_at(lake)
    assert ingest(lake, *LOYALTY).returncode == 0
    crashed = ingest(lake, *LOYALTY, env={"LAGO_FAILPOINT": "after-publish"})
    assert crashed.returncode == -9
    between = dbt_site.build(*BRONZE)
    assert between.returncode == 0, between.stdout[-3000:]
    assert ingest(lake, *LOYALTY).returncode == 0
    assert ingest(lake, *LOYALTY).returncode == 0
    last = dbt_site.build(*BRONZE)
    assert last.returncode == 0, last.stdout[-3000:]
    expected, lost, duplicated = bronze_versus_truth(dbt_site, lake)
    report.record(
        "dbt build between a crash (`after-publish`) and its rerun; Bronze vs truth",
        runs=6,
        expected=expected,
        lost=lost,
        duplicated=duplicated,
        note="4 ingestion runs, 2 dbt builds",
    )
    assert (lost, duplicated) == (0, 0)


def test_two_dbt_builds_on_one_duckdb_file_one_fails_clearly_nothing_corrupt(
    dbt_site: Dbt, tmp_path: Path, report: Recorder
) -> None:
    lake = tmp_path / "lake"
    dbt_site.point_at(lake)
    assert ingest(lake, *LOYALTY).returncode == 0
    # separate target folders, as two users' checkouts would have: only the database file is shared
    sites = [replace(dbt_site, work=tmp_path / name) for name in ("a", "b")]
    for site in sites:
        if dbt_site.target_path.is_dir():
            shutil.copytree(dbt_site.target_path, site.target_path)
    builds = [
        subprocess.Popen(site.command("build"), cwd=site.project, env=site.env, stdout=subprocess.PIPE, text=True)
        for site in sites
    ]
    outputs = [build.communicate(timeout=300)[0] for build in builds]
    codes = sorted(build.returncode for build in builds)
    failed = next((out for build, out in zip(builds, outputs, strict=True) if build.returncode != 0), "")
    lock_error = next((line for line in failed.splitlines() if "Could not set lock on file" in line), "")
    # the file is whole: it opens for writing, and the winner's Bronze is the truth
    duckdb.connect(str(dbt_site.database)).close()
    expected, lost, duplicated = bronze_versus_truth(dbt_site, lake)
    report.record(
        "two `dbt build` at once on one DuckDB file",
        runs=2,
        expected=expected,
        lost=lost,
        duplicated=duplicated,
        note=f"exit codes {codes}; the loser says "
        + ("'Could not set lock on file'" if lock_error else "nothing clear"),
    )
    assert codes[0] == 0 and codes[1] != 0, outputs
    assert lock_error and str(dbt_site.database) in lock_error, failed[-3000:]
    assert (lost, duplicated) == (0, 0)
