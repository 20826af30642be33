"""Each declared source as one Dagster multi-asset: one capture run under the lake's lock, one asset per table.

The sources and tables come from `ingestion.catalog` (the dbt sources YAML), so the asset keys are the ones
dagster-dbt gives the dbt sources (`[source, table]`) and the graph joins capture to Bronze without a second list.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from ingestion.catalog import Catalog, Source, Table, parse_database_mode
from ingestion.errors import IngestionError, LakeError, LakeLockedError
from ingestion.lake import Lake
from ingestion.readers.registry import DEFAULT_DATASET, DEFAULT_READER, ReaderOptions, reader_kind
from ingestion.run import RunRequest, run
from ingestion.state import CaptureRecord
from orchestration.settings import Settings

CAPTURE_GROUP = "capture"
# capture metadata: whether the capture published a change file (what the dbt build of the same run follows)
CHANGED = "changed"


class CaptureConfig(dg.Config):
    """The reader of one capture run, as `python -m ingestion run` takes it on its command line."""

    reader: str = DEFAULT_READER
    path: str | None = None
    scale: int = 10_000
    seed: int = 42
    dataset: str = DEFAULT_DATASET
    arrival_column: str | None = None
    # a database reader: every table captured in this mode for this run (None: each table's declared mode). The
    # database's connection string is configuration (LAGO_POSTGRES_DSN), never run config, which the UI shows.
    # Dagster's config has no Literal type: checked as the CLI checks --mode.
    mode: str | None = None

    def reader_options(self) -> ReaderOptions:
        return ReaderOptions(
            path=Path(self.path) if self.path else None,
            scale=self.scale,
            seed=self.seed,
            dataset=self.dataset,
            arrival_column=self.arrival_column,
            mode=None if self.mode is None else parse_database_mode(self.mode, "capture config mode"),
        )


def asset_key(table: Table) -> dg.AssetKey:
    """dagster-dbt's key for the dbt source of `table`."""
    return dg.AssetKey([table.source, table.name])


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
        CHANGED: dg.MetadataValue.bool(record.data_key is not None),
    }
    if record.data_key is not None:
        metadata["file"] = dg.MetadataValue.text(lake.uri_for(record.data_key))
    if record.day is not None:
        metadata["simulated_day"] = dg.MetadataValue.int(record.day)
    return metadata


def _in_log_mode(table: Table, config: CaptureConfig) -> bool:
    """Whether this run captures `table` from its database's log (as `ingestion.run` decides it)."""
    return reader_kind(config.reader).database and (config.mode or table.database_mode) == "log"


def slot_metadata(lake: Lake, source: Source, dsn: str | None) -> dict[str, dg.MetadataValue]:
    """Log mode: the source's replication slot as the server sees it after the capture, how many bytes of
    write-ahead log it holds and its `wal_status` (`lost` means the next capture heals with a diff), so the run
    history shows a slot falling behind before its WAL is removed. Empty when there is no slot or database."""
    from ingestion.identity import read_identity
    from ingestion.postgres.replication import lake_slot, slot_name

    identity = read_identity(lake)
    if dsn is None or identity is None:
        return {}
    info = lake_slot(dsn, identity.lake_id, source.name)
    metadata: dict[str, dg.MetadataValue] = {"slot": dg.MetadataValue.text(slot_name(identity.lake_id, source.name))}
    if info is None:
        return metadata | {"slot_wal_status": dg.MetadataValue.text("gone")}
    metadata["slot_wal_status"] = dg.MetadataValue.text(info.wal_status or "unknown")
    if info.lag_bytes is not None:
        metadata["slot_lag_bytes"] = dg.MetadataValue.int(info.lag_bytes)
    return metadata


def _capture(
    catalog: Catalog, source: Source, tables: list[Table], config: CaptureConfig, settings: Settings
) -> tuple[Lake, dict[str, CaptureRecord | None]]:
    """One call of the run service, as `python -m ingestion run --source <source> --tables ...` makes it.

    Returns each table's record, or None for a table the simulator had already captured for the run's day.
    """
    try:
        request = RunRequest(
            lake=settings.lake_uri,
            sources=(source,),
            reader=config.reader,
            reader_options=config.reader_options(),
            tables=tuple(t.name for t in tables),
            lock_wait=settings.lock_wait_seconds,
            # each source is a step of one job: every source's simulator moves to the day the first step settled
            day_scope="catalog",
        )
        result = run(settings.config, catalog, request)
    except (LakeLockedError, LakeError) as exc:
        # a busy lock or an unreachable lake passes: the run policy retries with backoff
        raise dg.Failure(f"capture of {source.name}: {exc}") from exc
    except IngestionError as exc:
        # bad declarations, options or snapshots stay bad on a retry; nothing was published
        raise dg.Failure(f"capture of {source.name}: {exc}", allow_retries=False) from exc
    (captured,) = result.sources
    return result.lake, captured.records


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
        logged = {t.name for t in tables if _in_log_mode(table=t, config=config)}
        slot: dict[str, dg.MetadataValue] = {}
        if logged:
            try:
                slot = slot_metadata(lake, source, settings.config.postgres_dsn)
            except IngestionError as exc:
                # the capture is published and confirmed: a slot that cannot be read now is reported, not failed
                context.log.warning("capture of %s: the slot's lag is not known: %s", source.name, exc)
        for table in tables:
            record = records[table.name]
            if record is None and table.name in logged:
                # the log held no change of this table since its last capture
                unchanged = dg.MetadataValue.bool(False)
                metadata = {"kind": dg.MetadataValue.text("no change in the log"), CHANGED: unchanged} | slot
                yield dg.MaterializeResult(asset_key=asset_key(table), metadata=metadata)
                continue
            if record is None:
                # the simulator had already captured this table for the run's simulated day: no new change
                context.log.info("%s: already captured for this simulated day", table.qualified_name)
                metadata = {"kind": dg.MetadataValue.text("already captured"), CHANGED: dg.MetadataValue.bool(False)}
                yield dg.MaterializeResult(asset_key=asset_key(table), metadata=metadata)
                continue
            metadata = record_metadata(record, lake)
            if table.name in logged:
                metadata |= slot
            yield dg.MaterializeResult(asset_key=asset_key(table), metadata=metadata)

    return capture


def retry_policy(settings: Settings) -> dg.RetryPolicy:
    """Transient failures (a busy lock, S3 away, a locked warehouse) are retried, waiting longer each time."""
    return dg.RetryPolicy(
        max_retries=settings.max_retries,
        delay=settings.retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )
