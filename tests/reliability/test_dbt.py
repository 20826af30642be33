"""dbt side: Bronze after an ingestion crash, and two `dbt build` on one DuckDB file.

Bronze is compared with the truth: for each loyalty table, the snapshot ingestion holds as current (the one its
state points to), column by column, as multisets. Every build uses the same LAKE_URI and DUCKDB_PATH (a symlink
re-pointed per test, a database file removed per test), so dbt's partial parsing is reused across builds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from reliability_support import ROOT, Recorder, ingest

from ingestion.catalog import load_catalog
from ingestion.duck import quote_identifier, sql_literal

pytestmark = pytest.mark.dbt

LOYALTY = ("--source", "loyalty", "--scale", "300")
BRONZE = ("--select", "path:models/bronze")


@dataclass(frozen=True)
class DbtSite:
    base: Path
    lake_link: Path
    database: Path
    target: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "LAKE_URI": str(self.lake_link), "DUCKDB_PATH": str(self.database)}

    def point_at(self, lake: Path) -> None:
        """Serve `lake` to dbt, with an empty warehouse."""
        self.lake_link.unlink(missing_ok=True)
        self.lake_link.symlink_to(lake, target_is_directory=True)
        for leftover in self.base.glob(f"{self.database.name}*"):
            leftover.unlink()

    def build(self, *args: str, target: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args, target=target), cwd=ROOT, env=self.env, capture_output=True, text=True
        )

    def command(self, *args: str, target: Path | None = None) -> list[str]:
        folder = target or self.target
        return [
            "dbt",
            "build",
            "--target",
            "dev",
            "--target-path",
            str(folder),
            "--log-path",
            str(folder / "logs"),
            *args,
        ]


@pytest.fixture(scope="module")
def dbt_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbtSite]:
    if shutil.which("dbt") is None:
        pytest.skip("dbt is not installed")
    base = tmp_path_factory.mktemp("dbt")
    yield DbtSite(base, base / "lake", base / "warehouse.duckdb", base / "target")


def bronze_versus_truth(site: DbtSite, lake: Path) -> tuple[int, int, int]:
    """(rows expected, rows lost, rows duplicated) of Bronze against the current snapshot of every loyalty table."""
    expected = lost = duplicated = 0
    source = load_catalog().source("loyalty")
    with duckdb.connect(str(site.database), read_only=True) as con:
        for table in source.tables.values():
            state = json.loads((lake / f"_ingestion/loyalty/{table.name}/state.json").read_text())
            truth = f"read_parquet({sql_literal(str(lake / state['snapshot_key']))})"
            columns = ", ".join(quote_identifier(c) for c in table.column_names)
            bronze = f"bronze.{quote_identifier('bronze_loyalty__' + table.name)}"
            counts = con.execute(
                f"""select
                    (select count(*) from {truth}),
                    (select count(*) from (select {columns} from {truth} except all select {columns} from {bronze})),
                    (select count(*) from (select {columns} from {bronze} except all select {columns} from {truth}))"""
            ).fetchall()[0]
            expected, lost, duplicated = expected + counts[0], lost + counts[1], duplicated + counts[2]
    return expected, lost, duplicated


def test_bronze_after_a_crash_between_publish_and_state_equals_the_truth(
    dbt_site: DbtSite, tmp_path: Path, report: Recorder
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
    dbt_site: DbtSite, tmp_path: Path, report: Recorder
) -> None:
    lake = tmp_path / "lake"
    dbt_site.point_at(lake)
    assert ingest(lake, *LOYALTY).returncode == 0
    # separate target folders, as two users' checkouts would have: only the database file is shared
    targets = [tmp_path / "target-a", tmp_path / "target-b"]
    for target in targets:
        if dbt_site.target.is_dir():
            shutil.copytree(dbt_site.target, target, ignore=shutil.ignore_patterns("logs"))
    builds = [
        subprocess.Popen(dbt_site.command(target=target), cwd=ROOT, env=dbt_site.env, stdout=subprocess.PIPE, text=True)
        for target in targets
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
