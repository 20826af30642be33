"""The lakehouse as Dagster assets (issue 13): the job `capture_then_build` run in process, twice, on a
temporary lake and warehouse, with a real Dagster instance and real dbt builds.

After the runs: every capture and dbt asset was materialised, Bronze equals the state the ingestion captured
last, every dbt test ran as an asset check and passed, and the run history holds each capture's counts and
each dbt node's timing. `dagster_home` (a module fixture) is also the instance the webserver test opens.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ingestion.catalog import load_catalog
from ingestion.lake import open_lake
from ingestion.state import load_state
from orchestration.lakehouse import JOB_NAME, build_definitions
from orchestration.settings import Settings

pytestmark = [pytest.mark.dbt, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCALE = 300
RUNS = 2


@dataclass
class Orchestrated:
    """A Dagster home with the history of `RUNS` successful runs of the job, and the lake and warehouse."""

    home: Path
    env: dict[str, str]
    settings: Settings
    run_ids: list[str]


def orchestration_env(root: Path) -> dict[str, str]:
    return {
        "LAKE_URI": str(root / "lake"),
        "DUCKDB_PATH": str(root / "warehouse.duckdb"),
        "LAGO_DBT_TARGET_PATH": str(root / "dbt-target"),
        "DAGSTER_HOME": str(root / "dagster-home"),
        # a failure here is a bug to see at once, not a transient error to wait out
        "LAGO_MAX_RETRIES": "0",
        "LAGO_LOCK_WAIT_SECONDS": "0",
    }


def capture_config(scale: int) -> dict[str, object]:
    return {"ops": {f"capture_{name}": {"config": {"scale": scale}} for name in load_catalog().sources}}


@pytest.fixture(scope="module")
def orchestrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrated]:
    root = tmp_path_factory.mktemp("dagster")
    env = orchestration_env(root)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir()
    # the checkout's instance configuration (run queue and pool limits), as `dagster dev` would use it
    shutil.copy(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        # dbt, run by dagster-dbt in a subprocess, reads the lake and the warehouse from the environment
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings.from_env()
        job = build_definitions(settings).resolve_job_def(JOB_NAME)
        run_ids = []
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for _ in range(RUNS):
                result = job.execute_in_process(instance=instance, run_config=capture_config(SCALE))
                assert result.success
                run_ids.append(result.run_id)
        yield Orchestrated(home, env, settings, run_ids)


def events_of(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list[dg.EventLogEntry]:
    return list(instance.all_logs(run_id, of_type=kind))


def test_the_job_captures_and_builds_every_asset(orchestrated: Orchestrated) -> None:
    settings = orchestrated.settings
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    job_keys = set(defs.resolve_job_def(JOB_NAME).asset_layer.selected_asset_keys)
    catalog = load_catalog()
    capture_keys = {dg.AssetKey([t.source, t.name]) for s in catalog.sources.values() for t in s.tables.values()}
    assert capture_keys <= job_keys
    # the graph joins capture to dbt: each source table is a parent of its Bronze model
    for key in capture_keys:
        children = {c.path[-1] for c in graph.get(key).child_keys}
        assert f"bronze_{key.path[0]}__{key.path[1]}" in children, (key, children)

    with dg.DagsterInstance.from_config(str(orchestrated.home)) as instance:
        for run_id in orchestrated.run_ids:
            materialised = {
                e.asset_materialization.asset_key
                for e in events_of(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION)
                if e.asset_materialization is not None
            }
            assert job_keys <= materialised, job_keys - materialised
        last = orchestrated.run_ids[-1]
        captures = {
            e.asset_materialization.asset_key: e.asset_materialization.metadata
            for e in events_of(instance, last, dg.DagsterEventType.ASSET_MATERIALIZATION)
            if e.asset_materialization is not None and e.asset_materialization.asset_key in capture_keys
        }
        dbt_timings = [
            e.asset_materialization.metadata.get("Execution Duration")
            for e in events_of(instance, last, dg.DagsterEventType.ASSET_MATERIALIZATION)
            if e.asset_materialization is not None and e.asset_materialization.asset_key not in capture_keys
        ]
        checks = [
            e.dagster_event.event_specific_data
            for e in events_of(instance, last, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            if e.dagster_event is not None
        ]

    # the second run's captures are changes on the first: counts and sequences in the run history
    lake = open_lake(settings.lake_uri)
    loyalty = catalog.source("loyalty")
    for table in loyalty.tables.values():
        metadata = captures[dg.AssetKey(["loyalty", table.name])]
        state = load_state(lake, table)
        record = state.last_capture
        assert record is not None and record.kind == "cdc"
        assert metadata["kind"].value == "cdc"
        assert metadata["rows"].value == record.snapshot_rows
        assert (metadata["inserts"].value, metadata["updates"].value, metadata["deletes"].value) == (
            record.inserts,
            record.updates,
            record.deletes,
        )
        assert metadata["last_sequence"].value == state.last_sequence
    assert sum(captures[dg.AssetKey(["loyalty", "clientes"])][k].value for k in ("inserts", "updates", "deletes"))

    # dbt's own timing of every model, snapshot and seed
    assert dbt_timings and all(t is not None and t.value >= 0 for t in dbt_timings), dbt_timings
    # dbt tests as asset checks: many of them, all passed
    assert len(checks) >= 50, len(checks)
    failed = [c.check_name for c in checks if not c.passed]
    assert not failed, failed


def test_bronze_equals_the_captured_state(orchestrated: Orchestrated) -> None:
    lake = open_lake(orchestrated.settings.lake_uri)
    with duckdb.connect(orchestrated.settings.duckdb_path, read_only=True) as con:
        for table in load_catalog().source("loyalty").tables.values():
            snapshot = load_state(lake, table).snapshot_key
            assert snapshot is not None
            columns = ", ".join(f'"{c}"' for c in table.column_names)
            captured = f"read_parquet('{lake.uri_for(snapshot)}')"
            bronze = f"bronze.bronze_loyalty__{table.name}"
            missing, extra, rows = con.execute(
                f"""
                select
                    (select count(*) from (select {columns} from {captured} except all select {columns} from {bronze})),
                    (select count(*) from (select {columns} from {bronze} except all select {columns} from {captured})),
                    (select count(*) from {bronze})
                """
            ).fetchone() or (None, None, None)
            assert (missing, extra) == (0, 0), f"{table.name}: {missing} rows missing, {extra} extra"
            assert rows
