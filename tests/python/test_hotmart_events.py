"""Hotmart event ingestion: the simulator's stream, the CSV folder reader, the events files and crash safety."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from support.cli import ingest, run_cli

from ingestion.catalog import load_catalog
from ingestion.events import event_schema
from ingestion.readers.base import EventContext
from ingestion.readers.hotmart import HotmartSimulatorReader

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "seeds" / "hotmart"
TABLES = ("purchase", "product_item", "purchase_extra_info")
HOTMART = ("--source", "hotmart")


def sample_folder(dest: Path) -> Path:
    """The case's sample events as a CSV folder (`<table>.csv`), from the dbt seeds."""
    dest.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        shutil.copyfile(SAMPLE / f"hotmart_sample__{table}.csv", dest / f"{table}.csv")
    return dest


def lake_events(lake: Path, table: str) -> list[dict[str, object]]:
    """Every event row in the lake for `table`, file by file, without the batch id (it is the run's time)."""
    rows: list[dict[str, object]] = []
    for path in sorted((lake / "raw" / "hotmart" / "events" / table).glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            row.pop("_batch_id")
            rows.append(row)
    return rows


def test_simulator_runs_are_deterministic_one_day_per_run(tmp_path: Path) -> None:
    for lake in ("a", "b"):
        for _ in range(3):
            result = ingest(tmp_path / lake, *HOTMART, "--scale", "500")
            assert result.returncode == 0, result.stderr
    for table in TABLES:
        first, second = lake_events(tmp_path / "a", table), lake_events(tmp_path / "b", table)
        assert first and first == second
        files = sorted((tmp_path / "a" / "raw/hotmart/events" / table).glob(f"{table}_*.parquet"))
        days = [{r["_ingested_at"].date() for r in pq.read_table(f).to_pylist()} for f in files]
        assert days == [{datetime(2023, 1, d).date()} for d in (1, 2, 3)]


def test_events_files_have_the_explicit_schema(tmp_path: Path) -> None:
    assert ingest(tmp_path / "lake", *HOTMART, "--scale", "500").returncode == 0
    catalog = load_catalog()
    for table in TABLES:
        for path in (tmp_path / "lake" / "raw/hotmart/events" / table).glob("*.parquet"):
            schema = pq.read_schema(path)
            assert schema.remove_metadata() == event_schema(catalog.source("hotmart").table(table))
            assert str(schema.field("_ingested_at").type) == "timestamp[us, tz=UTC]"


def test_simulated_stream_is_realistic(tmp_path: Path) -> None:
    """Over 80 days: late items and extra info, identical re-sends, releases filled later, subsidiary switches,
    value corrections, and older states arriving after newer ones."""
    source = load_catalog().source("hotmart")
    reader = HotmartSimulatorReader(scale=1000, seed=7)
    con = duckdb.connect()
    for table in TABLES:
        files = []
        for day in range(80):
            workdir = tmp_path / table / str(day)
            workdir.mkdir(parents=True)
            context = EventContext(workdir, datetime.now(UTC), day)
            files.append(str(reader.read(source.table(table), context)))
        con.execute(f"create table {table} as select * from read_parquet({files!r})")

    def count(sql: str) -> int:
        return int(con.execute(sql).fetchall()[0][0])

    assert count("select count(*) from purchase where _ingested_at < transaction_datetime") == 0
    late = "select count(*) from {} where cast(_ingested_at as date) > transaction_date"
    assert count(late.format("product_item")) > 0
    assert count(late.format("purchase_extra_info")) > 0
    for table in TABLES:
        columns = ", ".join(c.name for c in source.table(table).columns)
        resent = f"select count(*) from (select {columns} from {table} group by all having count(*) > 1)"
        assert count(resent) > 0, f"{table}: no identical re-sends"
    released_later = """select count(*) from (select purchase_id from purchase group by purchase_id
        having count(*) filter (release_date is null) > 0 and count(*) filter (release_date is not null) > 0)"""
    assert count(released_later) > 0
    switched = """select count(*) from (select purchase_id from purchase_extra_info group by 1
        having count(distinct subsidiary) > 1)"""
    assert count(switched) > 0
    corrected = """select count(*) from (select purchase_id from product_item group by 1
        having count(distinct purchase_value) > 1)"""
    assert count(corrected) > 0
    stale = """select count(*) from purchase_extra_info as older join purchase_extra_info as newer using (purchase_id)
        where older.transaction_datetime < newer.transaction_datetime and older._ingested_at > newer._ingested_at"""
    assert count(stale) > 0


def test_csv_folder_arrival_column_and_only_new_rows(tmp_path: Path) -> None:
    folder = sample_folder(tmp_path / "csv")
    lake = tmp_path / "lake"
    args = ("--from", "csv", "--path", str(folder), "--arrival-column", "transaction_datetime")
    assert ingest(lake, *HOTMART, *args).returncode == 0
    purchases = lake_events(lake, "purchase")
    assert len(purchases) == 5
    for row in purchases:
        happened = row["transaction_datetime"]
        assert isinstance(happened, datetime) and row["_ingested_at"] == happened.replace(tzinfo=UTC)
    assert next(r for r in purchases if r["purchase_id"] == 56)["release_date"] is None

    # the same files again: nothing new, no new file
    assert ingest(lake, *HOTMART, *args).returncode == 0
    assert len(list((lake / "raw/hotmart/events/purchase").glob("*.parquet"))) == 1

    # a line appended: only that event is published, arriving now when no arrival column is given
    with (folder / "purchase_extra_info.csv").open("a", encoding="utf-8") as handle:
        handle.write("2023-08-01 10:00:00|2023-08-01|55|internacional\n")
    before = datetime.now(UTC)
    assert ingest(lake, *HOTMART, "--from", "csv", "--path", str(folder)).returncode == 0
    files = sorted((lake / "raw/hotmart/events/purchase_extra_info").glob("*.parquet"))
    assert len(files) == 2
    (new,) = pq.read_table(files[-1]).to_pylist()
    assert new["purchase_id"] == 55 and new["subsidiary"] == "internacional"
    assert new["_ingested_at"] >= before

    status = run_cli("status", *HOTMART, "--lake", str(lake), timeout=60)
    assert status.returncode == 0 and "purchase_extra_info" in status.stdout and "events" in status.stdout


@pytest.mark.parametrize("failpoint", ["after-stage-snapshot", "after-pending", "after-publish", "after-state"])
def test_crash_then_rerun_publishes_each_event_once(tmp_path: Path, failpoint: str) -> None:
    folder = sample_folder(tmp_path / "csv")
    args = ("--from", "csv", "--path", str(folder), "--arrival-column", "transaction_datetime")
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    assert ingest(clean, *HOTMART, *args).returncode == 0
    result = ingest(crashed, *HOTMART, *args, env={"LAGO_FAILPOINT": failpoint})
    assert result.returncode != 0
    assert ingest(crashed, *HOTMART, *args).returncode == 0
    assert ingest(crashed, *HOTMART, *args).returncode == 0  # and again: nothing new
    for table in TABLES:
        assert sorted(map(repr, lake_events(crashed, table))) == sorted(map(repr, lake_events(clean, table)))


def test_snapshot_readers_are_refused_for_an_events_source(tmp_path: Path) -> None:
    result = ingest(tmp_path / "lake", *HOTMART, "--from", "kaggle")
    assert result.returncode == 2 and "events source" in result.stderr
    result = ingest(tmp_path / "lake", *HOTMART, "--from", "csv")
    assert result.returncode == 2 and "--path" in result.stderr
