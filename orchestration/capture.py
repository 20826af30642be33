"""Each declared source as one Dagster multi-asset: one capture run under the lake's lock, one asset per table.

The sources and tables come from `ingestion.catalog` (the dbt sources YAML), so the asset keys are the ones
dagster-dbt gives the dbt sources (`[source, table]`) and the graph joins capture to Bronze without a second list.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from ingestion.capture import RunOptions, run_capture, simulator_days, simulator_target_day
from ingestion.catalog import Catalog, Source, Table
from ingestion.errors import IngestionError, LakeError, LakeLockedError
from ingestion.events import run_events
from ingestion.lake import Lake, open_lake
from ingestion.lock import LakeLock
from ingestion.readers.base import EventReader, SnapshotReader
from ingestion.state import CaptureRecord
from ingestion.table_store import load_state
from orchestration.settings import Settings

CAPTURE_GROUP = "capture"
READERS = ("simulator", "csv", "kaggle", "postgres")


class CaptureConfig(dg.Config):
    """The reader of one capture run, as `python -m ingestion run` takes it on its command line."""

    reader: str = "simulator"
    path: str | None = None
    scale: int = 10_000
    seed: int = 42
    dataset: str = "teocalvo/teomewhy-loyalty-system"
    arrival_column: str | None = None


def asset_key(table: Table) -> dg.AssetKey:
    """dagster-dbt's key for the dbt source of `table`."""
    return dg.AssetKey([table.source, table.name])


def _snapshot_reader(config: CaptureConfig) -> SnapshotReader:
    if config.reader == "simulator":
        from ingestion.readers.simulator import SimulatorReader

        return SimulatorReader(scale=config.scale, seed=config.seed)
    if config.reader == "csv":
        from ingestion.readers.csv import CsvFolderReader

        return CsvFolderReader(Path(_needs_path(config)))
    if config.reader == "postgres":
        from ingestion.postgres.connection import resolve_dsn
        from ingestion.readers.postgres import PostgresReader

        # the connection string only from env LAGO_POSTGRES_DSN: run configuration is shown in the UI
        return PostgresReader(resolve_dsn(None))
    from ingestion.readers.kaggle import KaggleReader

    kaggle: SnapshotReader = KaggleReader(dataset=config.dataset)
    return kaggle


def _event_reader(config: CaptureConfig) -> EventReader:
    if config.reader == "simulator":
        from ingestion.readers.hotmart import HotmartSimulatorReader

        return HotmartSimulatorReader(scale=config.scale, seed=config.seed)
    if config.reader == "csv":
        from ingestion.readers.events_csv import EventCsvFolderReader

        return EventCsvFolderReader(Path(_needs_path(config)), arrival_column=config.arrival_column)
    raise dg.Failure(f"reader {config.reader!r} reads snapshots; an events source reads simulator or csv")


def _needs_path(config: CaptureConfig) -> str:
    if not config.path:
        raise dg.Failure("reader csv needs `path`: a folder with one <table>.csv per table", allow_retries=False)
    return config.path


def record_metadata(record: CaptureRecord, lake: Lake) -> dict[str, dg.MetadataValue]:
    """What one capture changed, for the run history: counts, sequences, the file it published."""
    metadata: dict[str, dg.MetadataValue] = {
        "kind": dg.MetadataValue.text(record.kind),
        "capture_id": dg.MetadataValue.text(record.capture_id),
        "rows": dg.MetadataValue.int(record.snapshot_rows),
        "inserts": dg.MetadataValue.int(record.inserts),
        "updates": dg.MetadataValue.int(record.updates),
        "deletes": dg.MetadataValue.int(record.deletes),
        "first_sequence": dg.MetadataValue.int(record.first_sequence),
        "last_sequence": dg.MetadataValue.int(record.last_sequence),
        "seconds": dg.MetadataValue.float(round(record.seconds, 3)),
        "reader": dg.MetadataValue.text(record.reader),
        "recovered": dg.MetadataValue.bool(record.recovered),
    }
    if record.data_key is not None:
        metadata["file"] = dg.MetadataValue.text(lake.uri_for(record.data_key))
    if record.day is not None:
        metadata["simulated_day"] = dg.MetadataValue.int(record.day)
    return metadata


def _capture(
    catalog: Catalog, source: Source, tables: list[Table], config: CaptureConfig, settings: Settings
) -> tuple[Lake, dict[str, CaptureRecord | None]]:
    """One run of the ingestion's public API, as `python -m ingestion run --source <source>` makes it.

    Returns each table's record, or None for a table the simulator had already captured for the run's day.
    """
    if config.reader not in READERS:
        raise dg.Failure(f"reader must be one of {', '.join(READERS)}, not {config.reader!r}", allow_retries=False)
    lake = open_lake(settings.lake_uri)
    try:
        # one hold of the lock, passed down: the day is settled and the tables captured under it
        with LakeLock(lake, wait=settings.lock_wait_seconds) as lock:
            options = RunOptions(lock=lock)
            if config.reader == "simulator":
                # every source's simulator moves to the same day, like the CLI's run over all sources
                every_table = [t for s in catalog.sources.values() for t in s.tables.values()]
                day = simulator_target_day([load_state(lake, t) for t in every_table])
                options = RunOptions(lock=lock, simulator_day=day)
                # the tables the run will capture: those behind the day (the rest return no record)
                days = simulator_days({t.name: load_state(lake, t) for t in tables}, day)
                captured = [t for t in tables if days[t.name] is not None]
            else:
                captured = tables
            if source.capture == "events":
                records = run_events(lake, source, tables, _event_reader(config), options)
            else:
                records = run_capture(lake, source, tables, _snapshot_reader(config), options)
            by_table: dict[str, CaptureRecord | None] = {t.name: None for t in tables}
            by_table.update(zip((t.name for t in captured), records, strict=True))
            return lake, by_table
    except (LakeLockedError, LakeError) as exc:
        # a busy lock or an unreachable lake passes: the run policy retries with backoff
        raise dg.Failure(f"capture of {source.name}: {exc}") from exc
    except IngestionError as exc:
        # bad declarations or snapshots stay bad on a retry; nothing was published
        raise dg.Failure(f"capture of {source.name}: {exc}", allow_retries=False) from exc


def capture_assets(catalog: Catalog, source: Source, settings: Settings) -> dg.AssetsDefinition:
    """The multi-asset of `source`: a subset of its tables may be materialised, each table once per run."""
    by_key = {asset_key(t): t for t in source.tables.values()}
    specs = [
        dg.AssetSpec(
            key,
            description=f"Captured {table.qualified_name}: CDC Parquet files in the lake (raw/{table.source}/).",
            group_name=CAPTURE_GROUP,
            kinds={"python", "parquet"},
            metadata={"primary_key": ", ".join(table.primary_key), "capture": source.capture},
            skippable=True,
        )
        for key, table in by_key.items()
    ]

    @dg.multi_asset(
        name=f"capture_{source.name}",
        specs=specs,
        can_subset=True,
        description=f"One capture run of source {source.name} under the lake's lock.",
        retry_policy=retry_policy(settings),
        pool="lake",
    )
    def capture(context: dg.AssetExecutionContext, config: CaptureConfig) -> Iterator[dg.MaterializeResult[None]]:
        tables = [t for key, t in by_key.items() if key in context.selected_asset_keys]
        lake, records = _capture(catalog, source, tables, config, settings)
        for table in tables:
            record = records[table.name]
            if record is None:
                # the simulator had already captured this table for the run's simulated day: no new change
                context.log.info("%s: already captured for this simulated day", table.qualified_name)
                yield dg.MaterializeResult(
                    asset_key=asset_key(table), metadata={"kind": dg.MetadataValue.text("already captured")}
                )
                continue
            yield dg.MaterializeResult(asset_key=asset_key(table), metadata=record_metadata(record, lake))

    return capture


def retry_policy(settings: Settings) -> dg.RetryPolicy:
    """Transient failures (a busy lock, S3 away, a locked warehouse) are retried, waiting longer each time."""
    return dg.RetryPolicy(
        max_retries=settings.max_retries,
        delay=settings.retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )
