"""A database source in Dagster: the capture assets of a source read from Postgres as the CLI does (the run
service, the connection string from configuration, the mode from the run config), and each table's
materialisation says what it captured."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg
import pytest
from pgserver import PostgresCluster, fresh_database, simulate_day

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
