"""The lake as dbt reads it: every file the capture log says was published must be found, a file that is not a
lake file is refused by name, and a lake path or file name holding a quote reaches SQL only as a quoted literal.

Each scenario builds a warehouse from real captures, then attacks the lake, and compares the whole warehouse
(every table, the checkpoint and the change feeds included) before and after the refused build.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from reliability_support import Recorder, S3View, ingest, warehouse_state
from support.dbt import Dbt

pytestmark = pytest.mark.dbt

CAPTURE = ("--source", "loyalty", "--scale", "300")
LOYALTY = ("--select", "source:loyalty+")
REFUSED_HINT = "allow_missing_files"


def built(tmp_path: Path, lake: Path, captures: int = 2) -> Dbt:
    """`captures` captures of the loyalty source into `lake`, the warehouse built after each (in the site's folder,
    where dbt's parse of an earlier site is a partial parse)."""
    site = Dbt.at(tmp_path / "dbt", lake)
    for _ in range(captures):
        assert ingest(lake, *CAPTURE).returncode == 0
        site.build(*LOYALTY, check=True)
    return site


def published(lake: Path, source: str, table: str) -> list[str]:
    """The files the table's capture log lists as published, from the lake root."""
    state = json.loads((lake / "_ingestion" / source / table / "state.json").read_text())
    return [capture["data_key"] for capture in state["captures"] if capture["data_key"]]


def current_rows(lake: Path, table: str) -> int:
    """The table's row count at its last capture, as the capture log records it."""
    state = json.loads((lake / "_ingestion" / "loyalty" / table / "state.json").read_text())
    rows: int = state["captures"][-1]["snapshot_rows"]
    return rows


def count(site: Dbt, relation: str) -> int:
    rows = site.query(f"select count(*) from {relation}")
    return int(rows[0][0])


def test_a_deleted_full_load_is_refused_on_full_refresh_naming_it(tmp_path: Path, report: Recorder) -> None:
    """The full load of a table deleted, its change files kept: a rebuild would hold only the keys changed since."""
    lake = tmp_path / "lake"
    site = built(tmp_path, lake)
    full_load = next(key for key in published(lake, "loyalty", "produtos") if "/full-load/" in key)
    aside = tmp_path / "aside.parquet"
    shutil.move(lake / full_load, aside)
    before = warehouse_state(site.database)
    bronze_rows = len(before["bronze.bronze_loyalty__produtos"])
    assert bronze_rows == current_rows(lake, "produtos") > 0

    # the whole DAG and one model alone: both refuse, naming the file, and change nothing
    for selection in (LOYALTY, ("--select", "bronze_loyalty__produtos")):
        refused = site.build(*selection, "--full-refresh")
        assert refused.returncode != 0, refused.stdout[-3000:]
        assert full_load in refused.stdout and REFUSED_HINT in refused.stdout, refused.stdout[-3000:]
        assert "Nothing was changed" in refused.stdout
        state = warehouse_state(site.database)
        for table in ("bronze.bronze_loyalty__produtos", "history.history_loyalty__produtos"):
            assert state[table] == before[table], table

    # an incremental run has merged that file already: its rows are in the warehouse, nothing is lost
    incremental = site.build(*LOYALTY)
    assert incremental.returncode == 0, incremental.stdout[-3000:]
    assert count(site, "bronze.bronze_loyalty__produtos") == bronze_rows

    # with the file back, the rebuild holds what the incremental builds held
    shutil.move(aside, lake / full_load)
    site.build(*LOYALTY, "--full-refresh", check=True)
    assert count(site, "bronze.bronze_loyalty__produtos") == bronze_rows
    report.record(
        "dbt: a table's full-load file deleted, its change files kept; --full-refresh (DAG and one model)",
        runs=6,
        expected=bronze_rows,
        note="refused naming the missing file; warehouse unchanged; incremental runs unaffected",
    )


def test_an_unmerged_change_file_deleted_is_refused_incrementally(tmp_path: Path, report: Recorder) -> None:
    """A published change file not merged yet is gone: an incremental run would skip its changes for good."""
    lake = tmp_path / "lake"
    site = built(tmp_path, lake)
    assert ingest(lake, *CAPTURE).returncode == 0
    newest = published(lake, "loyalty", "clientes")[-1]
    assert "/cdc/" in newest
    (lake / newest).unlink()
    before = warehouse_state(site.database)
    refused = site.build(*LOYALTY)
    assert refused.returncode != 0
    assert newest in refused.stdout and "bronze_loyalty__clientes" in refused.stdout, refused.stdout[-3000:]
    state = warehouse_state(site.database)
    for table in ("bronze.bronze_loyalty__clientes", "history.history_loyalty__clientes"):
        assert state[table] == before[table], table
    # on purpose: the build goes on without the file, and says nothing about it again
    allowed = site.build(*LOYALTY, "--vars", "{allow_missing_files: true}")
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    report.record(
        "dbt: an unmerged change file deleted from the lake, incremental build",
        runs=5,
        expected=len(before["bronze.bronze_loyalty__clientes"]),
        note="refused naming the file; allow_missing_files builds without it on purpose",
    )


def test_a_deleted_events_batch_is_refused(tmp_path: Path, report: Recorder) -> None:
    """Events tables keep the same capture log: a batch file deleted is refused by name too."""
    lake = tmp_path / "lake"
    site = Dbt.at(tmp_path / "dbt", lake)
    assert ingest(lake, "--source", "hotmart").returncode == 0
    hotmart = ("--select", "source:hotmart+")
    site.build(*hotmart, check=True)
    batch = published(lake, "hotmart", "purchase")[0]
    assert "/events/" in batch
    purchases = count(site, "bronze.bronze_hotmart__purchase")
    assert purchases > 0
    (lake / batch).unlink()
    before = warehouse_state(site.database)
    refused = site.build(*hotmart, "--full-refresh")
    assert refused.returncode != 0
    assert batch in refused.stdout and "hotmart.purchase" in refused.stdout, refused.stdout[-3000:]
    assert (
        warehouse_state(site.database)["bronze.bronze_hotmart__purchase"] == before["bronze.bronze_hotmart__purchase"]
    )
    report.record(
        "dbt: an events batch file deleted from the lake, --full-refresh",
        runs=3,
        expected=purchases,
        note="refused naming the batch file; Bronze unchanged",
    )


def test_a_lake_without_capture_log_still_builds(tmp_path: Path, report: Recorder) -> None:
    """A lake written before the ingestion kept a capture log (or files put there by hand) builds as before."""
    lake = tmp_path / "lake"
    assert ingest(lake, *CAPTURE).returncode == 0
    for state in (lake / "_ingestion" / "loyalty").glob("*/state.json"):
        state.unlink()
    site = Dbt.at(tmp_path / "dbt", lake)
    site.build(*LOYALTY, check=True)
    rows = count(site, "bronze.bronze_loyalty__clientes")
    assert rows > 0
    report.record(
        "dbt: a lake without capture logs (older lakes)",
        runs=2,
        expected=rows,
        note="built from the files found; only the no-file guard applies",
    )


def test_a_lake_path_with_a_quote_builds_and_a_quoted_file_name_is_refused(tmp_path: Path, report: Recorder) -> None:
    """A lake at `o'brien lake` builds; a file whose name holds a quote (or any name the ingestion never writes)
    in a table's folder is refused naming it, never put into SQL, and the warehouse is unchanged."""
    lake = tmp_path / "o'brien lake"
    site = built(tmp_path, lake)
    for table in ("clientes", "produtos"):
        assert count(site, f"bronze.bronze_loyalty__{table}") == current_rows(lake, table) > 0
    files = site.query(
        "select count(*) from bronze.bronze_processed_files where model_name = 'bronze_loyalty__clientes'"
    )
    assert files == [(len(published(lake, "loyalty", "clientes")),)]
    folder = lake / "raw" / "loyalty" / "cdc" / "clientes"
    valid = sorted(folder.glob("clientes_*.parquet"))[-1]
    before = warehouse_state(site.database)
    strays = ["clientes_x'); drop table bronze.bronze_loyalty__clientes; --.parquet", "clientes_backup.parquet"]
    for name in strays:
        stray = folder / name
        shutil.copy(valid, stray)
        refused = site.build(*LOYALTY)
        assert refused.returncode != 0
        assert f"raw/loyalty/cdc/clientes/{name}" in refused.stdout, refused.stdout[-3000:]
        assert "Parser Error" not in refused.stdout, refused.stdout[-3000:]
        state = warehouse_state(site.database)
        for table in ("bronze.bronze_loyalty__clientes", "history.history_loyalty__clientes"):
            assert state[table] == before[table], table
        stray.unlink()
    assert site.build(*LOYALTY).returncode == 0
    report.record(
        "dbt: a lake folder with a quote in its path; stray files named with a quote or off the naming",
        runs=6,
        expected=len(before["bronze.bronze_loyalty__clientes"]),
        note="the lake builds; each stray file refused by name; warehouse unchanged",
    )


@pytest.mark.s3
def test_a_published_file_missing_from_an_s3_lake_is_refused(
    tmp_path: Path, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    """The same guard on an S3 lake, whose capture log DuckDB reads through fsspec."""
    site = Dbt.at(tmp_path / "dbt", s3_lake_env)
    assert ingest(s3_lake_env, *CAPTURE).returncode == 0
    site.build(*LOYALTY, check=True)
    view = S3View.of(seaweedfs.client(), s3_lake_env)
    state = json.loads(view.read("_ingestion/loyalty/produtos/state.json") or b"{}")
    full_load = state["captures"][0]["data_key"]
    assert full_load in view.list_keys("raw/loyalty/full-load/produtos/")
    view.client.delete_object(Bucket=view.bucket, Key=f"{view.prefix}/{full_load}")
    before = warehouse_state(site.database)
    assert len(before["bronze.bronze_loyalty__produtos"]) > 0
    refused = site.build(*LOYALTY, "--full-refresh")
    assert refused.returncode != 0
    assert full_load in refused.stdout and "Nothing was changed" in refused.stdout, refused.stdout[-3000:]
    assert warehouse_state(site.database) == before
    report.record(
        "dbt: a full-load file deleted from an S3 lake, --full-refresh",
        runs=3,
        expected=len(before["bronze.bronze_loyalty__produtos"]),
        note="refused naming the file, before any model runs; warehouse unchanged",
    )
