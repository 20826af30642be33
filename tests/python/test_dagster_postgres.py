"""A database source in Dagster: the capture assets of a source read from Postgres as the CLI does (the run
service, the connection string from configuration, the mode from the run config), and each table's
materialisation says what it captured."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg
import pytest
from pgserver import PostgresCluster, drop_slots, fresh_database, simulate_day

from ingestion.catalog import load_catalog
from orchestration.capture import capture_assets
from orchestration.settings import Settings


def materialise(settings: Settings, run_config: dict[str, object]) -> dg.ExecuteInProcessResult:
    catalog = load_catalog()
    source = catalog.source("loyalty")
    return dg.materialize(
        [capture_assets(catalog, source, settings)],
        run_config={"ops": {"capture_loyalty": {"config": run_config}}},
        raise_on_error=False,
    )


def test_a_postgres_source_is_captured_as_assets(postgres_server: PostgresCluster, tmp_path: Path) -> None:
    dsn = fresh_database(postgres_server)
    assert simulate_day(dsn, "--scale", "2000").returncode == 0
    settings = Settings.from_env({"LAKE_URI": str(tmp_path / "lake"), "LAGO_POSTGRES_DSN": dsn})

    result = materialise(settings, {"reader": "postgres", "mode": "snapshot"})
    assert result.success
    materialised = {m.asset_key.path[-1]: m.metadata for m in result.asset_materializations_for_node("capture_loyalty")}
    with psycopg.connect(dsn) as conn:
        for table in load_catalog().source("loyalty").tables.values():
            row = conn.execute(f"select count(*) from public.{table.name}").fetchone()
            assert row is not None and row[0] > 0, table.name
            metadata = materialised[table.name]
            assert metadata["kind"] == dg.MetadataValue.text("full-load")
            assert metadata["rows"] == dg.MetadataValue.int(row[0]), table.name
            assert metadata["reader"] == dg.MetadataValue.text("postgres")
            assert "slot_lag_bytes" not in metadata  # no slot in snapshot mode


def test_a_log_capture_materialisation_carries_its_slots_lag(
    postgres_server: PostgresCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Log mode: each table's materialisation says how much write-ahead log the source's slot holds after the
    capture, and its `wal_status`, so the run history shows a slot falling behind."""
    dsn = fresh_database(postgres_server, "dagster_log")
    request.addfinalizer(lambda: drop_slots(dsn))
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    settings = Settings.from_env({"LAKE_URI": str(tmp_path / "lake"), "LAGO_POSTGRES_DSN": dsn})
    config: dict[str, object] = {"reader": "postgres", "mode": "log"}
    assert materialise(settings, config).success
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('update public.produtos set "DescNomeProduto" = \'moved\' where "IdProduto" = 1')
    result = materialise(settings, config)
    assert result.success
    materialised = {m.asset_key.path[-1]: m.metadata for m in result.asset_materializations_for_node("capture_loyalty")}
    with psycopg.connect(dsn) as conn:
        ((slot, status),) = conn.execute(
            "select slot_name::text, wal_status from pg_replication_slots where database = current_database()"
        ).fetchall()
    produtos = materialised["produtos"]
    assert produtos["kind"] == dg.MetadataValue.text("cdc") and produtos["updates"] == dg.MetadataValue.int(1)
    assert produtos["slot"] == dg.MetadataValue.text(slot)
    assert produtos["slot_wal_status"] == dg.MetadataValue.text(status) and status == "reserved"
    lag = produtos["slot_lag_bytes"].value
    assert isinstance(lag, int) and 0 <= lag < 1 << 20, lag  # confirmed up to the run's start: little behind
    # every table of the source shares the slot, so each says the same, also one the log held no change of
    assert {m["slot_lag_bytes"].value for m in materialised.values()} == {lag}
    assert materialised["clientes"]["kind"] == dg.MetadataValue.text("no change in the log")


@pytest.mark.parametrize(
    ("run_config", "message"),
    [
        ({"reader": "simulator", "mode": "log"}, "--mode applies to database readers"),
        ({"reader": "postgres", "mode": "wal"}, "capture config mode must be one of snapshot, cursor, log"),
    ],
    ids=["mode-for-files", "unknown-mode"],
)
def test_a_mode_for_a_file_reader_fails_the_step_naming_it(
    tmp_path: Path, run_config: dict[str, object], message: str
) -> None:
    settings = Settings.from_env({"LAKE_URI": str(tmp_path / "lake")})
    result = materialise(settings, run_config)
    assert not result.success
    failure = result.failure_data_for_node("capture_loyalty")
    assert failure is not None and message in str(failure.error), failure
    assert not (tmp_path / "lake").exists(), "a refused run created the lake"
