"""Snapshot mode from a real Postgres: the simulator's days written into a database and captured from it give the
lake exactly the changes the simulator's own reader gives, locally and on S3; dbt builds Bronze from them; every
declared type reads back as itself; one run is one consistent cut across tables.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from pgserver import PostgresCluster, fresh_database, simulate_day
from support.cli import ingest
from support.dbt import Dbt

from ingestion.catalog import Column, Table, load_catalog
from ingestion.readers.base import CaptureContext
from ingestion.readers.postgres import PostgresReader

# at this scale the second day deletes a customer, so the days hold inserts, updates and deletes
SCALE, SEED, DAYS = 5000, 42, 2
SIMULATOR = ("--scale", str(SCALE), "--seed", str(SEED))
TABLES = load_catalog().source("loyalty").tables
Change = tuple[Any, ...]


def lake_changes(lake: str, client: Any = None) -> Counter[Change]:
    """Every published row as (kind, table, operation, columns...): without `_cdc_timestamp` (the run's clock) and
    `_cdc_sequence` (the order of rows within a capture follows the source's order, which a database does not fix).
    """
    files: list[tuple[str, Any]] = []
    if lake.startswith("s3://"):
        bucket, _, prefix = lake.removeprefix("s3://").partition("/")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/raw/")
        for key in [o["Key"] for page in pages for o in page.get("Contents", [])]:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            files.append((key.removeprefix(f"{prefix}/"), pq.read_table(io.BytesIO(body))))
    else:
        for path in sorted(Path(lake, "raw").rglob("*.parquet")):
            files.append((str(path.relative_to(lake)), pq.read_table(path)))
    rows: Counter[Change] = Counter()
    for key, data in files:
        _, _, kind, table, _ = key.split("/", 4)
        for row in data.to_pylist():
            del row["_cdc_timestamp"], row["_cdc_sequence"]
            rows[(kind, table, *row.values())] += 1
    return rows


def operations(changes: Counter[Change]) -> Counter[tuple[str, str]]:
    """(table, I/U/D) counts."""
    counted: Counter[tuple[str, str]] = Counter()
    for change, times in changes.items():
        counted[(change[1], change[2])] += times
    return counted


@pytest.fixture(scope="module")
def simulator_changes(tmp_path_factory: pytest.TempPathFactory) -> Counter[Change]:
    """The same days captured by the simulator's own reader: the truth a database capture must reproduce."""
    lake = tmp_path_factory.mktemp("simulator") / "lake"
    for _ in range(DAYS):
        ingest(lake, "--source", "loyalty", "--from", "simulator", *SIMULATOR, check=True)
    changes = lake_changes(str(lake))
    assert {op for _, op in operations(changes)} == {"I", "U", "D"}
    return changes


def capture_days(postgres_server: PostgresCluster, lake: str) -> str:
    """A new database that follows the simulator for DAYS days, each day captured from it into `lake`."""
    dsn = fresh_database(postgres_server, "days")
    for _ in range(DAYS):
        written = simulate_day(dsn, *SIMULATOR)
        assert written.returncode == 0, written.stderr[-3000:]
        ingest(lake, "--source", "loyalty", "--from", "postgres", env={"LAGO_POSTGRES_DSN": dsn}, check=True)
    return dsn


def test_a_database_capture_equals_the_simulators(
    any_lake: str, postgres_server: PostgresCluster, simulator_changes: Counter[Change], request: pytest.FixtureRequest
) -> None:
    capture_days(postgres_server, any_lake)
    client = request.getfixturevalue("seaweedfs").client() if any_lake.startswith("s3://") else None
    found = lake_changes(any_lake, client)
    assert operations(found) == operations(simulator_changes)
    assert found == simulator_changes


def table_rows(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            name: int(str(conn.execute(f'select count(*) from public."{name}"').fetchone()[0]))  # type: ignore[index]
            for name in TABLES
        }


@pytest.mark.dbt
def test_dbt_builds_bronze_from_a_database_capture(tmp_path: Path, postgres_server: PostgresCluster) -> None:
    site = Dbt.at(tmp_path)
    dsn = capture_days(postgres_server, site.lake)
    site.build("--select", "source:loyalty+", check=True)
    expected = table_rows(dsn)
    assert expected["clientes"] > SCALE  # the database holds the second day's customers
    with site.connect() as con:
        for name, rows in expected.items():
            (found,) = con.execute(f"select count(*) from bronze.bronze_loyalty__{name}").fetchall()[0]
            assert found == rows, name


# -- every declared type, read exactly -------------------------------------------------------------------------------

KINDS = Table(
    source="shop",
    name="kinds",
    columns=(
        Column("Id", "integer"),
        Column("label", "varchar"),
        Column("big", "bigint"),
        Column("ratio", "double"),
        Column("flag", "boolean"),
        Column("day", "date"),
        Column("at", "timestamp"),
        Column("at_zoned", "timestamp"),
        Column("amount", "decimal(18,2)"),
        Column("code", "varchar"),
    ),
    primary_key=("Id",),
    database_table=("sales", "all_kinds"),
)

KINDS_DDL = """
create schema sales;
create type colour as enum ('red', 'green');
-- no primary key: snapshot mode takes the declared one; unquoted Id is stored as id and still found
create table sales.all_kinds (
    Id smallint, label varchar(40), big integer, ratio real, flag boolean, day date, at timestamp(3),
    at_zoned timestamptz, amount numeric(12,2), code colour, ignored text
);
insert into sales.all_kinds values
    (1, '', 2147483647, 0.5, true, '2024-02-29', '2024-01-01 10:00:00.123', '2024-01-01 10:00:00-03:00',
     12.34, 'red', 'x'),
    (2, null, null, null, null, null, null, null, null, null, null),
    (3, E'a "quoted", comma;\\nnew line, ção', -2147483648, 'NaN', false, '0001-01-01', '1999-12-31 23:59:59.999',
     '2000-01-01 00:00:00.000001+00', -0.01, 'green', null),
    (4, '\\N', 0, '-Infinity', null, '9999-12-31', null, null, 9999999999.99, null, null);
"""


def test_every_declared_type_reads_back_as_itself(postgres_server: PostgresCluster, tmp_path: Path) -> None:
    dsn = fresh_database(postgres_server, "kinds")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(KINDS_DDL)  # type: ignore[arg-type]
    reader = PostgresReader(dsn)
    snapshot = reader.read(KINDS, CaptureContext(tmp_path))
    reader.close()
    assert snapshot.file is not None and snapshot.expected_rows() == 4
    data = pq.read_table(snapshot.file)
    assert data.schema == KINDS.schema
    rows = {row["Id"]: row for row in data.to_pylist()}
    assert rows[1] == {
        "Id": 1,
        "label": "",
        "big": 2147483647,
        "ratio": 0.5,
        "flag": True,
        "day": date(2024, 2, 29),
        "at": datetime(2024, 1, 1, 10, 0, 0, 123000),
        "at_zoned": datetime(2024, 1, 1, 13, 0, 0),  # timestamptz in UTC
        "amount": Decimal("12.34"),
        "code": "red",
    }
    assert rows[2] == {"Id": 2} | {c.name: None for c in KINDS.columns[1:]}
    assert rows[3]["label"] == 'a "quoted", comma;\nnew line, ção'
    assert rows[3]["big"] == -2147483648 and math.isnan(rows[3]["ratio"]) and rows[3]["flag"] is False
    assert rows[3]["day"] == date(1, 1, 1) and rows[3]["at_zoned"] == datetime(2000, 1, 1, 0, 0, 0, 1)
    assert rows[3]["amount"] == Decimal("-0.01") and rows[3]["code"] == "green"
    assert rows[4]["label"] == "\\N" and rows[4]["ratio"] == -math.inf and rows[4]["day"] == date(9999, 12, 31)
    assert rows[4]["amount"] == Decimal("9999999999.99")


def test_one_run_is_one_consistent_cut(postgres_server: PostgresCluster, tmp_path: Path) -> None:
    """A transaction that commits between the reads of two tables is in neither snapshot; the next run sees it."""
    dsn = fresh_database(postgres_server, "cut")
    clientes, produtos = TABLES["clientes"], TABLES["produtos"]
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    before = table_rows(dsn)
    reader = PostgresReader(dsn)
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
    first = reader.read(clientes, CaptureContext(tmp_path / "a"))
    with psycopg.connect(dsn) as writer:  # one transaction that moves both tables
        writer.execute(
            'delete from public.clientes where "idCliente" in (select "idCliente" from public.clientes limit 5)'
        )
        writer.execute("""insert into public.produtos values (999, 'Novo', null, 'chat')""")
    second = reader.read(produtos, CaptureContext(tmp_path / "b"))
    reader.close()
    assert first.expected_rows() == before["clientes"]
    assert second.expected_rows() == before["produtos"]  # the insert committed after the run's cut
    later = PostgresReader(dsn)
    assert later.read(produtos, CaptureContext(tmp_path / "c")).expected_rows() == before["produtos"] + 1
    later.close()


def test_dagster_captures_from_postgres(postgres_server: PostgresCluster, tmp_path: Path) -> None:
    """The capture asset with reader `postgres`, materialised by Dagster, reads the connection string from the
    configuration's LAGO_POSTGRES_DSN only: the run configuration, shown in the UI, has no field for it, and the
    configuration's repr does not show it."""
    import dagster as dg

    from orchestration.capture import CaptureConfig, capture_assets
    from orchestration.settings import Settings

    dsn = fresh_database(postgres_server, "dagster")
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    catalog = load_catalog()
    source = catalog.source("loyalty")
    settings = Settings.from_env({"LAKE_URI": str(tmp_path / "lake"), "LAGO_POSTGRES_DSN": dsn})
    assert settings.config.postgres_dsn == dsn and dsn not in repr(settings)
    assert not [name for name in CaptureConfig.model_fields if "dsn" in name]
    run_config = {"ops": {f"capture_{source.name}": {"config": {"reader": "postgres"}}}}
    result = dg.materialize([capture_assets(catalog, source, settings)], run_config=run_config)
    assert result.success
    found = {
        event.materialization.asset_key.path[-1]: (
            meta["kind"].value,
            meta["inserts"].value,
            meta["reader"].value,
        )
        for event in result.get_asset_materialization_events()
        for meta in [event.materialization.metadata]
    }
    rows = table_rows(dsn)
    assert len(rows) == len(source.tables) and all(count > 0 for count in rows.values()), rows
    assert found == {name: ("full-load", count, "postgres") for name, count in rows.items()}


def test_dagster_without_a_dsn_fails_the_run_without_retries(tmp_path: Path) -> None:
    """No LAGO_POSTGRES_DSN: the asset fails naming the variable, retries nothing and leaves no lake."""
    import dagster as dg

    from orchestration.capture import capture_assets
    from orchestration.settings import Settings

    catalog = load_catalog()
    source = catalog.source("loyalty")
    lake = tmp_path / "lake"
    settings = Settings.from_env({"LAKE_URI": str(lake)})
    run_config = {"ops": {f"capture_{source.name}": {"config": {"reader": "postgres"}}}}
    result = dg.materialize([capture_assets(catalog, source, settings)], run_config=run_config, raise_on_error=False)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert "LAGO_POSTGRES_DSN" in message and "--dsn" in message, message
    assert not [event for event in result.all_events if event.event_type_value == "STEP_RESTARTED"]
    assert not lake.exists(), "a run without a database created the lake"
