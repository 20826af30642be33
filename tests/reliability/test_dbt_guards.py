"""Guards on the dbt side: a build that would empty or mix the warehouse refuses, names what is wrong, and changes
nothing; how LAKE_URI is spelled and what the clock says never change what a build does.

Each scenario builds a warehouse from a real capture, then attacks it, and compares the whole warehouse (every
table, the checkpoint and the change feeds included) before and after the refused build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_support import ROOT, Recorder, ingest, warehouse_state
from support.dbt import Dbt

pytestmark = pytest.mark.dbt

CAPTURE = ("--source", "loyalty", "--scale", "300")
LOYALTY = ("--select", "source:loyalty+")


def dbt_build(site: Dbt, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return site.build(*LOYALTY, *args, cwd=cwd)


class BuiltWarehouses:
    """Lakes of 1, 2, ... captures, each built after every capture, made once for the module: each scenario attacks
    a copy of one (lake, warehouse and dbt's target folder together; a lake copied is the same lake moved)."""

    def __init__(self, folder: Path) -> None:
        self._site = Dbt.at(folder)
        self._captures = 0
        self._made: dict[int, Path] = {}

    def _made_with(self, captures: int) -> Path:
        while self._captures < captures:
            assert ingest(Path(self._site.lake), *CAPTURE).returncode == 0
            build = dbt_build(self._site)
            assert build.returncode == 0, build.stdout[-3000:]
            self._captures += 1
            self._made[self._captures] = self._site.work.with_name(f"{self._site.work.name}-{self._captures}")
            shutil.copytree(self._site.work, self._made[self._captures], symlinks=True)
        return self._made[captures]

    def copy(self, work: Path, captures: int = 2) -> tuple[Path, Dbt]:
        """A lake of `captures` captures, built after each, under `work`: the lake and the site that built it."""
        shutil.copytree(self._made_with(captures), work, symlinks=True, dirs_exist_ok=True)
        site = Dbt.at(work)
        return Path(site.lake), site


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltWarehouses:
    return BuiltWarehouses(tmp_path_factory.mktemp("built") / "site")


def rows(database: Path) -> int:
    return sum(len(table) for table in warehouse_state(database).values())


def test_a_full_refresh_against_a_missing_lake_refuses_and_changes_nothing(
    tmp_path: Path, built: BuiltWarehouses, report: Recorder
) -> None:
    _, site = built.copy(tmp_path)
    before = warehouse_state(site.database)
    refused = dbt_build(site.on_lake(tmp_path / "lake-mistyped"), "--full-refresh")
    assert refused.returncode != 0
    assert "lake-mistyped" in refused.stdout and "Nothing was changed" in refused.stdout, refused.stdout[-3000:]
    assert warehouse_state(site.database) == before
    # the next build against the right lake is green and changes nothing either
    assert dbt_build(site).returncode == 0
    assert warehouse_state(site.database).keys() == before.keys()
    report.record(
        "dbt: --full-refresh with a mistyped LAKE_URI refuses; warehouse unchanged",
        runs=4,
        expected=rows(site.database),
        note="refused before any model is rebuilt",
    )


def test_a_table_whose_files_were_all_deleted_is_not_emptied(
    tmp_path: Path, built: BuiltWarehouses, report: Recorder
) -> None:
    lake, site = built.copy(tmp_path)
    shutil.rmtree(lake / "raw" / "loyalty" / "full-load" / "produtos")
    shutil.rmtree(lake / "raw" / "loyalty" / "cdc" / "produtos", ignore_errors=True)
    before = warehouse_state(site.database)
    refused = dbt_build(site, "--full-refresh")
    assert refused.returncode != 0
    # the capture log names every published file of the table, so the rebuild refuses before any model runs
    assert "loyalty.produtos: " in refused.stdout and "published files missing" in refused.stdout, refused.stdout[
        -3000:
    ]
    assert "Nothing was changed" in refused.stdout
    assert warehouse_state(site.database) == before
    # a lake without a capture log (older lakes) still meets the guard on the empty listing
    shutil.rmtree(lake / "_ingestion" / "loyalty" / "produtos")
    refused = dbt_build(site, "--full-refresh")
    assert refused.returncode != 0
    assert "bronze_loyalty__produtos: the lake holds no file of loyalty.produtos" in refused.stdout
    assert "allow_truncate" in refused.stdout
    state = warehouse_state(site.database)
    assert state["bronze.bronze_loyalty__produtos"] == before["bronze.bronze_loyalty__produtos"]
    assert state["history.history_loyalty__produtos"] == before["history.history_loyalty__produtos"]
    # an explicit truncation is allowed
    allowed = dbt_build(site, "--full-refresh", "--select", "bronze_loyalty__produtos",
                        "--vars", "{allow_truncate: true}")  # fmt: skip
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    with site.connect() as con:
        assert con.execute("select count(*) from bronze.bronze_loyalty__produtos").fetchone() == (0,)
    report.record(
        "dbt: --full-refresh after every file of one table was deleted (with and without its capture log) refuses;"
        " allow_truncate empties it",
        runs=5,
        expected=len(before["bronze.bronze_loyalty__produtos"]),
        note="the table and its history kept; truncation only when asked",
    )


def test_a_warehouse_refuses_another_lake(tmp_path: Path, built: BuiltWarehouses, report: Recorder) -> None:
    _, site = built.copy(tmp_path / "a")
    other = tmp_path / "b" / "lake"
    assert ingest(other, *CAPTURE).returncode == 0
    before = warehouse_state(site.database)
    for extra in ((), ("--full-refresh",)):
        refused = dbt_build(site.on_lake(other), *extra)
        assert refused.returncode != 0
        assert "this warehouse" in refused.stdout and "Nothing was changed" in refused.stdout, refused.stdout[-3000:]
        assert warehouse_state(site.database) == before
    report.record(
        "dbt: a warehouse built from one lake, pointed at another (incremental and --full-refresh), refuses",
        runs=4,
        expected=rows(site.database),
        note="no mix of two lakes",
    )


def test_the_same_lake_spelled_otherwise_is_the_same_lake(
    tmp_path: Path, built: BuiltWarehouses, report: Recorder
) -> None:
    lake, site = built.copy(tmp_path)
    assert ingest(lake, *CAPTURE).returncode == 0
    spellings = [str(lake) + "/", os.path.relpath(lake, tmp_path), str(lake)]
    for spelling in spellings:
        build = dbt_build(site.on_lake(spelling), cwd=tmp_path)
        assert build.returncode == 0, build.stdout[-3000:]
    with site.connect() as con:
        merged = con.execute(
            "select count(*), count(distinct file_name) from bronze.bronze_processed_files "
            "where model_name = 'bronze_loyalty__clientes'"
        ).fetchone()
        assert merged == (3, 3), merged
        names = con.execute("select distinct _source_file from bronze.bronze_loyalty__clientes").fetchall()
        assert all(name.startswith("raw/loyalty/") for (name,) in names), names
    moved = tmp_path / "moved" / "lake"
    shutil.move(lake, moved)
    before = warehouse_state(site.database)
    assert dbt_build(site.on_lake(moved)).returncode == 0
    assert warehouse_state(site.database) == before
    report.record(
        "dbt: one lake as an absolute path, with a trailing slash, relative, then moved",
        runs=5,
        expected=rows(site.database),
        note="files named from the lake root; nothing merged twice",
    )


def test_a_file_of_another_convention_in_a_native_folder_is_refused(
    tmp_path: Path, built: BuiltWarehouses, report: Recorder
) -> None:
    lake, site = built.copy(tmp_path, captures=1)
    assert ingest(lake, *CAPTURE).returncode == 0  # a native change file in the same batch
    folder = lake / "raw" / "loyalty" / "cdc" / "clientes"
    native = sorted(folder.glob("*.parquet"))[-1]
    foreign = (
        pq.read_table(native)
        .drop(["_cdc_operation", "_cdc_sequence"])
        .append_column("op", pa.array(["u"] * pq.read_metadata(native).num_rows))
    )
    alien = folder / "clientes_29990101_000000_000000.parquet"
    pq.write_table(foreign, alien)
    before = warehouse_state(site.database)
    refused = dbt_build(site)
    assert refused.returncode != 0
    assert "raw/loyalty/cdc/clientes/clientes_29990101_000000_000000.parquet" in refused.stdout, refused.stdout[-3000:]
    state = warehouse_state(site.database)
    for table in ("bronze.bronze_loyalty__clientes", "history.history_loyalty__clientes"):
        assert state[table] == before[table], table

    def clientes_files(state: dict[str, list[tuple[object, ...]]]) -> list[tuple[object, ...]]:
        return [row for row in state["bronze.bronze_processed_files"] if "clientes" in str(row[0])]

    # the other tables of the capture merged as usual; no file of the refused batch was recorded
    assert clientes_files(state) == clientes_files(before)
    alien.unlink()
    assert dbt_build(site).returncode == 0
    report.record(
        "dbt: a change file without _cdc_operation/_cdc_sequence in a native folder, with a native one",
        runs=3,
        expected=len(before["bronze.bronze_loyalty__clientes"]),
        note="refused naming the file; nothing recorded as merged; merged once it is gone",
    )


def test_silver_follows_the_change_feed_not_the_clock(tmp_path: Path, built: BuiltWarehouses, report: Recorder) -> None:
    """Bronze's load times moved hours behind (a clock set back) and ahead: Silver still gets every change."""
    lake, site = built.copy(tmp_path)
    for shift in ("- interval 3 hour", "+ interval 30 day"):
        with site.connect(read_only=False) as con:
            con.execute(f"update bronze.bronze_loyalty__clientes set _loaded_at = _loaded_at {shift}")
        assert ingest(lake, *CAPTURE).returncode == 0
        build = dbt_build(site)
        assert build.returncode == 0, build.stdout[-3000:]
    with site.connect() as con:
        missing = con.execute(
            """
            select count(*) from (
                select trim("idCliente"), "qtdePontos" from bronze.bronze_loyalty__clientes
                except
                select customer_id, points_balance from silver.silver_loyalty__customers
            )
            """
        ).fetchone()
        total = con.execute("select count(*) from silver.silver_loyalty__customers").fetchone()
    assert missing == (0,)
    report.record(
        "dbt: Bronze's load times 3 h behind, then 30 days ahead; Silver vs Bronze",
        runs=6,
        expected=total[0] if total else 0,
        lost=missing[0] if missing else 0,
        note="Silver reads Bronze's change feed by version",
    )


CONSUMER, PRODUCER = "silver_loyalty__customers", "bronze_loyalty__clientes"


def count(site: Dbt, table: str) -> int:
    found: int = site.query(f"select count(*) from {table}")[0][0]
    return found


def test_a_consumer_that_cannot_follow_its_producers_feed_refuses_and_changes_nothing(
    tmp_path: Path, built: BuiltWarehouses, report: Recorder
) -> None:
    """Silver applies Bronze's change feed from the version it last read. A Bronze rebuilt on its own starts a new
    feed (the changes in between are gone), and a consumer with no recorded position does not know where to start:
    either way an incremental build of the consumer would miss changes, so it refuses, names the fix, and changes
    nothing; the fix is exact."""
    _, site = built.copy(tmp_path)
    customers = count(site, f"bronze.{PRODUCER}")
    assert customers > 0 and count(site, f"silver.{CONSUMER}") == customers
    fix = f"dbt build --full-refresh --select {CONSUMER}+"

    # a consumer without a position (a warehouse from before positions were kept, or a lost row)
    with site.connect(read_only=False) as con:
        con.execute("delete from bronze.change_feed_positions where consumer_name = ?", [CONSUMER])
    before = warehouse_state(site.database)
    refused = site.build("--select", CONSUMER)
    assert refused.returncode != 0
    assert f"{CONSUMER} has no position in the change feed of {PRODUCER}" in refused.stdout, refused.stdout[-3000:]
    assert fix in refused.stdout
    assert warehouse_state(site.database) == before

    # the fix, then Bronze rebuilt alone: its feed starts again
    assert site.build("--select", f"{CONSUMER}+", "--full-refresh").returncode == 0
    assert site.build("--select", PRODUCER, "--full-refresh").returncode == 0
    before = warehouse_state(site.database)
    refused = site.build("--select", CONSUMER)
    assert refused.returncode != 0
    assert f"{PRODUCER} was rebuilt (--full-refresh) after {CONSUMER} last read its changes" in refused.stdout, (
        refused.stdout[-3000:]
    )
    assert fix in refused.stdout
    assert warehouse_state(site.database) == before

    fixed = site.build("--select", f"{CONSUMER}+", "--full-refresh")
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert count(site, f"silver.{CONSUMER}") == count(site, f"bronze.{PRODUCER}") == customers
    # and the consumer follows the new feed incrementally again
    assert site.build("--select", CONSUMER).returncode == 0
    report.record(
        "dbt: a consumer whose producer was rebuilt alone, or that has no feed position, refuses; warehouse unchanged",
        runs=7,
        expected=customers,
        note="the refusal names the --full-refresh that fixes it; after it, Silver equals Bronze",
    )
