"""Bad inputs on the dbt side: a corrupt Parquet file in the lake (named like a change file) fails `dbt build` with
an error naming the file, a non-zero exit, and the warehouse unchanged: every table, the checkpoint and the
snapshot included, row for row (the report counts the warehouse's rows). Nothing that arrived with it is merged;
once it is gone, the next build merges everything else and Bronze equals the truth.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from reliability_support import (
    ChangeRow,
    History,
    Recorder,
    capture_files,
    compare,
    compare_bronze,
    snapshot_truth,
    warehouse_state,
)
from support.dbt import Dbt

from ingestion.catalog import load_catalog

pytestmark = pytest.mark.dbt

LOYALTY = load_catalog().source("loyalty")
CLIENTES = LOYALTY.tables["clientes"]
TABLES = (CLIENTES, LOYALTY.tables["produtos"])
BUILD = (
    "--select",
    "bronze_loyalty__clientes",
    "bronze_loyalty__produtos",
    "history_loyalty__clientes",
)
# named like a change file, and newer than every other: it is in the next batch of bronze_loyalty__clientes
BAD_NAME = "clientes_29990101_000000_000000.parquet"


def every_row(state: dict[str, list[ChangeRow]]) -> Counter[ChangeRow]:
    """The rows of every table of the warehouse (checkpoint and snapshot included), as one multiset."""
    return Counter((table, *row) for table, rows in state.items() for row in rows)


def corruptions(good: bytes) -> dict[str, bytes]:
    return {
        "garbage bytes": b"not a Parquet file\n" * 64,
        "a truncated Parquet file (its first half)": good[: len(good) // 2],
        "an empty file": b"",
    }


def test_a_corrupt_parquet_file_fails_the_build_naming_it_and_changes_nothing(
    dbt_site: Dbt, history: History, tmp_path: Path, report: Recorder
) -> None:
    lake = tmp_path / "lake"
    dbt_site.point_at(lake)
    files = {table.name: capture_files(history.lake, table) for table in TABLES}

    def deliver(path: Path) -> Path:
        target = lake / path.relative_to(history.lake)
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(path, target))

    # every file of produtos and the full load of clientes: the last build before the bad file
    for path in [*files[TABLES[1].name], files[CLIENTES.name][0]]:
        deliver(path)
    first = dbt_site.build(*BUILD)
    assert first.returncode == 0, first.stdout[-3000:]

    # good change files arrive with the bad one: they must not be merged without it either
    cdc = [deliver(path) for path in files[CLIENTES.name][1:]]
    bad = cdc[0].with_name(BAD_NAME)
    for what, data in corruptions(cdc[0].read_bytes()).items():
        bad.write_bytes(data)
        before = warehouse_state(dbt_site.database)
        build = dbt_site.build(*BUILD)
        lines = build.stdout.replace(dbt_site.lake, "$LAKE_URI").splitlines()
        naming = [line.strip() for line in lines if BAD_NAME in line]
        after = warehouse_state(dbt_site.database)
        result = compare(every_row(before), every_row(after))
        report.record(
            f"dbt: corrupt Parquet in the lake: {what}",
            runs=1,
            expected=result.expected,
            lost=result.lost,
            duplicated=result.duplicated,
            note=f"exit {build.returncode}; "
            + (f"the error: {naming[0][:200]}" if naming else "the error does not name the file"),
        )
        assert build.returncode != 0, build.stdout[-3000:]
        assert naming, build.stdout[-3000:]
        assert after == before, f"{what}: a failed build changed the warehouse"

    bad.unlink()
    recovered = dbt_site.build(*BUILD)
    assert recovered.returncode == 0, recovered.stdout[-3000:]
    with dbt_site.connect() as con:
        result = compare_bronze(con, [(table, snapshot_truth(history.lake, table)) for table in TABLES])
        merged = con.execute(
            "select count(*) from bronze.bronze_processed_files where model_name = 'bronze_loyalty__clientes'"
        ).fetchone()
    report.record(
        "dbt: the corrupt file removed, the next build merges the files that came with it",
        runs=1,
        expected=result.expected,
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert result.exact, result
    assert merged == (len(files[CLIENTES.name]),)
