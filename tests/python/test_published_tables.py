"""Gold published into the lake as Delta tables by the DuckDB build (macros/publish/publish_to_lake.sql,
ingestion/published_tables.py): after each build every published table equals the warehouse's, row for row, read
with delta-rs; an incremental build commits a MERGE of what changed, a build with nothing new commits nothing, a
--full-refresh commits a new whole version, a table whose test fails keeps its last publication, and a publication
that fails fails the build with the table, its location and why."""

from __future__ import annotations

import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from cross_engine import normalise
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from support.cli import ingest
from support.dbt import Dbt

from ingestion.freshness import published_freshness
from ingestion.published_tables import PublishedTables
from ingestion.published_views import attach_published, connect

pytestmark = pytest.mark.dbt
pytest_plugins = ["spark_support"]

SIMULATOR = ("--scale", "2000", "--seed", "11")
LOYALTY = ("--select", "source:loyalty+")
# the Gold tables of the loyalty lineage (gold_customer_churn is a view: computed when read, not published)
GOLD = (
    "gold_points_daily_cube",
    "gold_points_monthly_report",
    "gold_points_monthly_restatements",
    "gold_customer_churn_summary",
)


# the Silver tables of the loyalty lineage: published from their change feeds
SILVER = (
    "silver_loyalty__customers",
    "silver_loyalty__products",
    "silver_loyalty__transactions",
    "silver_loyalty__transaction_products",
)


def schema_of(table: str) -> str:
    return table.split("_", 1)[0]


def published(site: Dbt, table: str) -> DeltaTable:
    tables = PublishedTables(site.lake)
    return DeltaTable(tables.location(schema_of(table), table), storage_options=tables.storage_options())


def operations(site: Dbt, table: str) -> list[str]:
    """The table's Delta commits, oldest first."""
    return [str(commit["operation"]) for commit in reversed(published(site, table).history())]


def assert_published_equals_warehouse(site: Dbt, table: str, rows: pa.Table | None = None) -> int:
    """The published table, read with delta-rs (or by another reader: `rows`), holds the warehouse table's rows,
    no more and no fewer; returns how many."""
    if rows is None:
        rows = pa.table(published(site, table).to_pyarrow_dataset().to_table())
    schema = schema_of(table)
    con = duckdb.connect(str(site.database), read_only=True)
    try:
        con.register("published", rows)
        [(missing, extra, count)] = con.execute(
            f"""
            select
                (select count(*) from (select * from {schema}.{table} except all select * from published)),
                (select count(*) from (select * from published except all select * from {schema}.{table})),
                (select count(*) from {schema}.{table})
            """
        ).fetchall()
    finally:
        con.close()
    assert (missing, extra) == (0, 0), f"{table}: {missing} warehouse rows not published, {extra} published extra"
    assert rows.num_rows == count
    return int(count)


def view_rows(views: duckdb.DuckDBPyConnection, table: str) -> pa.Table:
    """The rows of a published table's view."""
    return views.sql(f"select * from {schema_of(table)}.{table}").to_arrow_table()


def test_silver_and_gold_are_published_and_follow_each_build(tmp_path: Path, any_lake: str) -> None:
    site = Dbt.at(tmp_path, any_lake)
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    counts = {table: assert_published_equals_warehouse(site, table) for table in (*SILVER, *GOLD)}
    # no month was restated yet: its table is published empty
    assert all(counts[table] > 0 for table in (*SILVER, "gold_points_daily_cube", "gold_points_monthly_report"))
    # DuckDB reads the same rows through the published views (ingestion/published_views.py), from S3 too
    with connect(site.lake) as views:
        for table in (*SILVER, *GOLD):
            assert_published_equals_warehouse(site, table, view_rows(views, table))
    # and dbt, on the `lake` target
    reader = Dbt.at(tmp_path / "reader", site.lake, database=site.database, target="lake")
    assert show_count(reader, "silver_loyalty__transactions") == counts["silver_loyalty__transactions"]
    assert all(operations(site, table) == ["WRITE"] for table in (*SILVER, *GOLD))

    first = {record.table: record for record in PublishedTables(site.lake).builds()}
    assert set(first) == {*SILVER, *GOLD} and all(record.kind == "created" for record in first.values())
    assert {mark.table for mark in first["gold_points_daily_cube"].sources} == {
        "loyalty.transacoes",
        "loyalty.transacao_produto",
        "loyalty.produtos",
    }
    assert all(row.status == "fresh" for row in published_freshness(site.lake)), published_freshness(site.lake)

    # nothing new: the build writes no row, and no publication commits; the build is recorded all the same
    site.build(*LOYALTY, check=True)
    assert all(operations(site, table) == ["WRITE"] for table in (*SILVER, *GOLD))
    again = {record.table: record for record in PublishedTables(site.lake).builds()}
    assert all(record.kind == "unchanged" and record.version == 0 for record in again.values()), again
    assert not list(site.database.parent.glob(".publish_*")), "a staged file was left beside the warehouse"
    assert all(again[table].built_at > first[table].built_at for table in (*SILVER, *GOLD))

    # the next day is captured: every table is behind the lake, naming what it misses, until the next build
    ingest(site.lake, *SIMULATOR, check=True)
    stale = {row.table: row for row in published_freshness(site.lake)}
    assert all(row.status == "stale" for row in stale.values()), stale
    assert "of loyalty.transacoes not in it yet" in stale["gold.gold_points_daily_cube"].describe()

    # the next day is built: Gold by one MERGE of what differs, Silver by one MERGE of its feed's changes (the
    # customers' points moved, new transactions), each equal to the warehouse again
    site.build(*LOYALTY, check=True)
    counts = {table: assert_published_equals_warehouse(site, table) for table in (*SILVER, *GOLD)}
    assert counts["gold_points_monthly_restatements"] > 0, counts
    assert all(operations(site, table) == ["WRITE", "MERGE"] for table in GOLD)
    for table in ("silver_loyalty__customers", "silver_loyalty__transactions"):
        assert operations(site, table) == ["WRITE", "MERGE"], table
        # the MERGE's source is the feed's changes, not the table: fewer rows than the table holds
        commit = published(site, table).history(1)[0]
        assert 0 < commit["operationMetrics"]["num_source_rows"] == int(commit["lago_mago.changes"]) < counts[table]
    built = {record.table: record for record in PublishedTables(site.lake).builds()}
    assert built["silver_loyalty__customers"].kind == "merged"
    assert all(row.status == "fresh" for row in published_freshness(site.lake))


def test_a_full_refresh_publishes_a_new_version_and_a_failing_test_keeps_the_last(tmp_path: Path) -> None:
    site = Dbt.at(tmp_path)
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    site.build(*LOYALTY, "--full-refresh", check=True)
    for table in (*SILVER, *GOLD):
        assert_published_equals_warehouse(site, table)
        assert operations(site, table)[-1] == "WRITE" and published(site, table).version() == 1

    # a Silver table removed from the lake is published whole again by the next build that writes it
    shutil.rmtree(PublishedTables(site.lake).location("silver", "silver_loyalty__customers"))

    # a duplicated report row of a month the next day's changes do not touch: the report's grain test fails, so
    # the report keeps its last publication, while the cube (its tests pass) publishes the next day's changes
    with site.connect(read_only=False) as con:
        report = "gold.gold_points_monthly_report"
        con.execute(
            f"insert into {report} select * from {report} "
            f"where month_start_date = (select min(month_start_date) from {report})"
        )
    ingest(site.lake, *SIMULATOR, check=True)
    result = site.build(*LOYALTY)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "Failure in test column_checks_gold_points_monthly_report" in result.stdout, result.stdout[-3000:]
    assert published(site, "gold_points_monthly_report").version() == 1
    assert operations(site, "gold_points_daily_cube")[-1] == "MERGE"
    assert_published_equals_warehouse(site, "gold_points_daily_cube")
    # Silver built and passed: its feed's changes since the rebuild are published; the removed table whole
    assert operations(site, "silver_loyalty__transactions")[-1] == "MERGE"
    assert operations(site, "silver_loyalty__customers") == ["WRITE"]
    for table in ("silver_loyalty__customers", "silver_loyalty__transactions"):
        assert_published_equals_warehouse(site, table)

    # a publication that cannot be written fails the build, naming the table, its location and why
    location = Path(PublishedTables(site.lake).location("gold", "gold_points_daily_cube"))
    shutil.rmtree(location)
    location.write_text("not a Delta table", encoding="utf-8")
    result = site.build("--select", "gold_points_daily_cube")
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"publishing gold.gold_points_daily_cube to {location}: " in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stdout + result.stderr


def show_count(reader: Dbt, table: str) -> int:
    """`dbt show --target lake` of how many rows the published table holds."""
    shown = reader("show", "--inline", f"select count(*) as n from {{{{ ref('{table}') }}}}", check=True)
    [line] = [line for line in shown.stdout.splitlines() if line.strip().strip("|").strip().isdigit()]
    return int(line.strip().strip("|"))


def test_readers_of_the_published_tables_never_block_a_build(tmp_path: Path) -> None:
    """A DuckDB connection on the published tables held open across two builds, `dbt show --target lake` run again
    and again during the first: both builds pass. The held connection reads, whole, the versions it was opened at;
    a new one, dbt show and Polars read what the last build published, equal to the warehouse. The `lake` target
    refuses to build."""
    site = Dbt.at(tmp_path / "build")
    # the reader's own target folder: its parse and the build's stay partial
    reader = Dbt.at(tmp_path / "reader", site.lake, database=site.database, target="lake")
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    held = connect(site.lake)
    first = {table: view_rows(held, table) for table in (*SILVER, *GOLD)}
    for table, rows in first.items():
        assert_published_equals_warehouse(site, table, rows)
    first_count = first["silver_loyalty__transactions"].num_rows
    assert show_count(reader, "silver_loyalty__transactions") == first_count > 0

    # a build with dbt show run again and again beside it; on a loaded machine one show can outlast a whole build,
    # so up to three days are built until a show has run whole during one
    counts, during = [first_count], 0
    for _ in range(3):
        ingest(site.lake, *SIMULATOR, check=True)
        with ThreadPoolExecutor(max_workers=1) as pool:
            building = pool.submit(site.build, *LOYALTY)
            seen = []
            while not building.done():
                seen.append(show_count(reader, "silver_loyalty__transactions"))
                during += not building.done()
                assert view_rows(held, "silver_loyalty__transactions") == first["silver_loyalty__transactions"]
            result = building.result()
        assert result.returncode == 0, result.stdout[-3000:]
        [(count,)] = site.query("select count(*) from silver.silver_loyalty__transactions")
        assert count > counts[-1]
        # each show read one published version whole: the one before this build's, or this build's
        assert set(seen) <= {counts[-1], count}, seen
        counts.append(count)
        if during:
            break
    assert during >= 1, f"no dbt show ran whole during any of {len(counts) - 1} builds"
    second_count = counts[-1]

    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    for table, rows in first.items():
        assert view_rows(held, table) == rows, f"{table}: the held connection's rows changed"
    # attached again, it reads the last versions
    attach_published(held, site.lake)
    for table in (*SILVER, *GOLD):
        assert_published_equals_warehouse(site, table, view_rows(held, table))
    held.close()
    tables = PublishedTables(site.lake)
    with connect(site.lake) as views:
        for table in (*SILVER, *GOLD):
            assert_published_equals_warehouse(site, table, view_rows(views, table))
            location = tables.location(schema_of(table), table)
            assert_published_equals_warehouse(site, table, pl.read_delta(location).to_arrow())
    [(third_count,)] = site.query("select count(*) from silver.silver_loyalty__transactions")
    assert show_count(reader, "silver_loyalty__transactions") == third_count > second_count

    versions = {table: tables.version(schema_of(table), table) for table in (*SILVER, *GOLD)}
    refused = reader.build(*LOYALTY)
    assert refused.returncode != 0
    assert "The target lake reads the tables published into the lake" in refused.stdout, refused.stdout[-3000:]
    assert " START sql " not in refused.stdout, "a model ran on the lake target"
    assert {table: tables.version(schema_of(table), table) for table in (*SILVER, *GOLD)} == versions


@pytest.mark.spark
def test_spark_reads_every_published_table_as_the_warehouse_holds_it(tmp_path: Path, spark: SparkSession) -> None:
    """Spark with Delta Lake reads the tables delta-rs wrote as they are: the same rows as the warehouse."""
    site = Dbt.at(tmp_path)
    ingest(site.lake, *SIMULATOR, check=True)
    ingest(site.lake, "--source", "hotmart", "--scale", "10000", check=True)
    site.build(check=True)
    tables = PublishedTables(site.lake)
    read = 0
    for table in (*SILVER, *GOLD, "silver_hotmart__purchase_versions", "gold_gmv_daily_history"):
        frame = spark.read.format("delta").load(tables.location(schema_of(table), table))
        columns = frame.columns
        # as multisets of rows: NULLs do not sort
        from_spark = Counter(tuple(normalise(value) for value in row) for row in frame.select(*columns).collect())
        quoted = ", ".join(f'"{column}"' for column in columns)
        from_duckdb = Counter(
            tuple(normalise(value) for value in row)
            for row in site.query(f"select {quoted} from {schema_of(table)}.{table}")
        )
        assert from_spark == from_duckdb, table
        read += from_spark.total()
    assert read > 0
