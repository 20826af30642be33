"""One capture run: for each table, read a snapshot, diff it against the last one, and hand the prepared
capture to its `TableStore`, which stages, publishes and commits it in the crash-safe order it documents.

A run has two phases: every table's snapshot is read, checked and diffed locally first; only when all of them
succeeded (and the circuit breaker let them pass) is anything published. A bad table therefore leaves the whole
lake unchanged.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from ingestion import cdc
from ingestion.breaker import held_files, hold
from ingestion.catalog import Source, Table
from ingestion.config import DEFAULT_DUCKDB_MEMORY_LIMIT
from ingestion.duck import check_lake, parquet_columns, same_type
from ingestion.errors import LakeStateError, MassDeleteError, PreviousSnapshotError, SnapshotError, SourceChangedError
from ingestion.identity import ensure_identity
from ingestion.lake import Lake
from ingestion.lock import LakeLock
from ingestion.readers.base import CaptureContext, Snapshot, SnapshotReader
from ingestion.state import CaptureKind, CaptureRecord, TableState, capture_id_of, moment_of
from ingestion.table_store import PreparedCapture, TableStore
from ingestion.verdict import judge
from ingestion.window import apply_window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How `run_tables` captures, set by the run service (`ingestion.run`), which holds the lake's lock."""

    lock: LakeLock
    # publish a capture the circuit breaker would hold
    allow_mass_delete: bool = False
    # the simulated day of this run, settled over every source it captures (None: settled over its tables)
    simulator_day: int | None = None
    # the cap of every DuckDB connection of the run (env LAGO_DUCKDB_MEMORY_LIMIT)
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    workdir: Path | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


def prepare_capture(
    lake: Lake,
    table: Table,
    reader: SnapshotReader,
    workdir: Path,
    day: int | None,
    options: RunOptions,
    run_tables: tuple[Table, ...] = (),
) -> PreparedCapture | CaptureRecord:
    """Read and diff one table's snapshot locally; a CaptureRecord when a recovered capture stands for it.
    `run_tables` are every table the run reads from `reader` (see `CaptureContext.run_tables`)."""
    started = time.monotonic()
    store = TableStore(lake, table)
    state, recovered = store.settle_then_continue(day)
    if recovered is not None:
        return recovered

    table_dir = workdir / table.source / table.name
    table_dir.mkdir(parents=True, exist_ok=True)
    reads = 1
    while True:
        try:
            return _read_and_diff(store, state, reader, table_dir, day, options, started, run_tables)
        except SourceChangedError as exc:
            if reads >= SOURCE_READS:
                raise
            reads += 1
            log.warning(
                "%s: %s changed while it was read (%s); reading it again whole",
                table.qualified_name,
                exc.file,
                exc.change,
            )


# A source file replaced while it is captured is read again whole, up to this many reads in all, then refused.
SOURCE_READS = 3


def _read_and_diff(
    store: TableStore,
    state: TableState,
    reader: SnapshotReader,
    table_dir: Path,
    day: int | None,
    options: RunOptions,
    started: float,
    run_tables: tuple[Table, ...],
) -> PreparedCapture:
    """One read of the table's source, its diff, and the next snapshot, all from that one version of it."""
    table = store.table
    memory = options.duckdb_memory_limit
    previous = _reader_state(state, reader.name)
    snapshot = reader.read(table, CaptureContext(table_dir, day or 0, memory, previous, run_tables))

    captured_at = options.now().astimezone(UTC)
    last = state.last_capture
    if last is not None and captured_at <= moment_of(last.capture_id):
        captured_at = moment_of(last.capture_id) + timedelta(microseconds=1)
    capture_id = capture_id_of(captured_at)
    first_sequence = state.last_sequence + 1
    changes = table_dir / f"changes_{capture_id}.parquet"

    kind: CaptureKind
    delta = False
    try:
        if state.snapshot_key is None:
            if snapshot.partial:
                raise LakeStateError(
                    table.qualified_name,
                    "the reader read only the rows that changed, but the lake holds no stored state to apply them to",
                    store.repair_hint(),
                )
            kind = "full-load"
            result = cdc.full_load(table, snapshot, captured_at, first_sequence, changes, memory)
            # the full load holds every row: it is the table's first stored snapshot as it is
            stored: Path | None = snapshot.file or changes
        else:
            rows = last.snapshot_rows if last is not None else 0
            baseline = _baseline(store, state, rows, table_dir)
            current = snapshot
            if snapshot.partial:
                current = apply_window(table, baseline, snapshot, table_dir / "upserted.parquet", memory)
            result = cdc.diff(table, baseline, current, captured_at, first_sequence, changes, memory)
            kind = "cdc" if result.counts.total else "unchanged"
            stored, delta = _next_snapshot(table, state, kind, current, baseline, result, changes, table_dir, memory)
    except SnapshotError:
        snapshot.verify_unchanged()  # a source replaced mid-read looks broken: say what happened instead
        raise
    # the change file and the next snapshot come from one read of the source: it must not have changed since
    snapshot.verify_unchanged()

    record = CaptureRecord(
        capture_id=capture_id,
        kind=kind,
        data_key=store.data_key(kind, capture_id) if kind != "unchanged" else None,
        snapshot_key=store.snapshot_key(capture_id) if stored is not None else "",
        first_sequence=first_sequence,
        last_sequence=result.last_sequence if result.counts.total else state.last_sequence,
        inserts=result.counts.inserts,
        updates=result.counts.updates,
        deletes=result.counts.deletes,
        snapshot_rows=result.snapshot_rows,
        reader=reader.name,
        day=day,
        snapshot_delta=delta,
        reader_state=snapshot.reader_state,
        cut=snapshot.cut,
    )
    verdict = None
    if kind == "cdc" and last is not None:
        verdict = judge(table, last.snapshot_rows, result.snapshot_rows, result.counts.deletes)
    return PreparedCapture(table, state, record, changes if record.data_key else None, stored, started, verdict)


def _reader_state(state: TableState, reader: str) -> dict[str, Any] | None:
    """What `reader` kept at its latest capture of the table that kept something: a capture in between by
    another reader, or one that kept nothing (a database table captured whole for one run), leaves it as it was."""
    for record in reversed(state.captures):
        if record.reader == reader and record.reader_state is not None:
            return record.reader_state
    return None


# A CSV capture stores its change file as the next snapshot (see `cdc.Baseline`) until the change files since
# the last full snapshot hold more rows than this share of the table, or there are this many of them; the
# capture then writes a full snapshot again, so the previous state stays cheap to read.
COMPACT_SHARE = 0.25
COMPACT_FILES = 16


def _next_snapshot(
    table: Table,
    state: TableState,
    kind: CaptureKind,
    snapshot: Snapshot,
    baseline: cdc.Baseline,
    result: cdc.DiffResult,
    changes: Path,
    workdir: Path,
    memory_limit: str,
) -> tuple[Path | None, bool]:
    """What the capture stores as the table's next snapshot, and whether it is a change file on top of the
    previous state: nothing when nothing changed; the reader's own Parquet file when it wrote one (free);
    else the change file, or a full snapshot when the stored change files have grown too big.

    The full snapshot is the previous state with this capture's change file applied, never a second read of the
    source: a file replaced in between would otherwise be stored as the baseline while the change log holds the
    version read first, and the next capture would find nothing to publish."""
    if kind == "unchanged":
        return None, False
    if snapshot.file is not None:
        return snapshot.file, False
    grown = state.delta_rows + result.counts.total > COMPACT_SHARE * max(result.snapshot_rows, 1)
    if grown or len(state.snapshot_deltas) + 1 >= COMPACT_FILES:
        compacted = cdc.compact(
            table, baseline, changes, result.snapshot_rows, workdir / "snapshot.parquet", memory_limit
        )
        return compacted, False
    return changes, True


def _baseline(store: TableStore, state: TableState, rows: int, workdir: Path) -> cdc.Baseline:
    """The stored state the next capture is diffed against: read in place, from a local lake's folder or
    streamed from S3 by DuckDB through fsspec (downloaded only when s3fs is missing)."""
    assert state.snapshot_key is not None
    lake = store.lake
    filesystem = None if lake.local_path(state.snapshot_key) else lake.duckdb_filesystem()
    keys = [state.snapshot_key, *state.snapshot_deltas]
    files = [_stored_file(store, key, workdir / f"previous_{i}.parquet", filesystem) for i, key in enumerate(keys)]
    return cdc.Baseline(files[0], tuple(files[1:]), rows, filesystem)


def _stored_file(store: TableStore, key: str, dest: Path, filesystem: Any | None) -> Path | str:
    """Where DuckDB reads a stored snapshot file; an unreadable one is named by its lake URI."""
    lake, table = store.lake, store.table
    if not lake.exists(key):
        raise LakeStateError(
            table.qualified_name,
            f"its state points at the snapshot {lake.uri_for(key)}, which is missing",
            "restore the file from a backup of the lake; or, to capture the table again from scratch, "
            + store.repair_hint(),
        )
    location: Path | str | None = lake.local_path(key)
    if location is None:
        location = lake.stream_uri(key) if filesystem is not None else None
    if location is None:
        location = lake.download(key, dest)
    con = duckdb.connect()
    try:
        if filesystem is not None:
            con.register_filesystem(filesystem)
        columns = parquet_columns(con, location)
    except duckdb.Error as exc:
        check_lake(exc, filesystem)
        raise PreviousSnapshotError(
            table.qualified_name,
            lake.uri_for(key),
            f"is not readable Parquet ({str(exc).splitlines()[0]}); restore it, or move the table's state aside to "
            "start again with a full load",
        ) from exc
    finally:
        con.close()
    # a file of another table or another tool: its key columns must be there, with their declared types
    for name in table.primary_key:
        declared = table.column(name).data_type
        found = columns.get(name)
        if found is None or not same_type(found, declared):
            raise PreviousSnapshotError(
                table.qualified_name,
                lake.uri_for(key),
                f"is not a snapshot of this table: key column {name} is {found or 'missing'}, declared {declared}; "
                "restore the table's snapshot from a backup of the lake",
            )
    return location


def _last_day(state: TableState) -> int:
    last = state.last_capture
    return last.day if last is not None and last.day is not None else -1


def simulator_target_day(states: list[TableState]) -> int:
    """The simulated day a run captures: max+1, or, after an interrupted run left tables behind, the max."""
    days = [_last_day(s) for s in states]
    highest = max(days, default=-1)
    return highest if any(d < highest for d in days) else highest + 1


def simulator_days(states: dict[str, TableState], target: int | None = None) -> dict[str, int | None]:
    """The simulated day each table captures in this run; None for a table already at the run's day.

    All tables move together: every table behind the target day captures it (see `simulator_target_day`).
    """
    if target is None:
        target = simulator_target_day(list(states.values()))
    return {name: (target if _last_day(state) < target else None) for name, state in states.items()}


def run_tables(
    lake: Lake,
    tables: list[Table],
    simulated_days: bool,
    options: RunOptions,
    prepare_one: Callable[[Table, Path, int | None], PreparedCapture | CaptureRecord],
    describe: Callable[[CaptureRecord], str],
) -> dict[str, CaptureRecord | None]:
    """Capture each table once under the lake's lock, held by the caller: prepare every table, then publish them
    all. Returns each table's record, None for a table already captured for the run's simulated day.

    The simulator's tables move through simulated days together (see `simulator_days`).
    """
    records: dict[str, CaptureRecord | None] = {t.name: None for t in tables}
    lock = options.lock
    with tempfile.TemporaryDirectory(prefix="lago-capture-", dir=options.workdir) as tmp:
        lock.check()
        lake.clear_scratch()
        days: dict[str, int | None] = {t.name: None for t in tables}
        if simulated_days:
            days = simulator_days({t.name: TableStore(lake, t).load_state() for t in tables}, options.simulator_day)
        prepared: list[tuple[Table, PreparedCapture | CaptureRecord]] = []
        for table in tables:
            if simulated_days and days[table.name] is None:
                log.info("%s: already captured for this simulated day", table.qualified_name)
                continue
            prepared.append((table, prepare_one(table, Path(tmp), days[table.name])))
        _apply_breaker(lake, [item for _, item in prepared if isinstance(item, PreparedCapture)], options)
        # the identity comes with the first write of a run whose every table was read and checked: a refused
        # run leaves a new lake as empty as it found it
        ensure_identity(lake)
        # every table is staged and decided before any is published: a crash now loses no table's capture
        for _, item in prepared:
            if isinstance(item, PreparedCapture):
                lock.check()
                TableStore(lake, item.table).stage(item)
        for table, item in prepared:
            lock.check()
            record = TableStore(lake, table).publish(item) if isinstance(item, PreparedCapture) else item
            log.info(
                "%s: %s%s, %.2fs%s",
                table.qualified_name,
                describe(record),
                f", day {record.day}" if record.day is not None else "",
                record.seconds,
                " (recovered)" if record.recovered else "",
            )
            records[table.name] = record
    return records


def _apply_breaker(lake: Lake, prepared: list[PreparedCapture], options: RunOptions) -> None:
    """Hold every capture the circuit breaker trips on, then stop the run: no table is published."""
    tripped = [p for p in prepared if p.verdict is not None]
    if not tripped:
        return
    if options.allow_mass_delete:
        for item in tripped:
            assert item.verdict is not None
            log.warning("%s; published anyway (--allow-mass-delete)", item.verdict.describe())
        return
    lines = []
    for item in tripped:
        assert item.verdict is not None and item.data is not None and item.staged is not None
        key = hold(
            TableStore(lake, item.table), item.state, item.record, item.data, item.staged, item.verdict.describe()
        )
        lines.append(f"{item.verdict.describe()}; held as {lake.uri_for(key)}")
    names = " ".join(item.table.qualified_name for item in tripped)
    raise MassDeleteError(
        tripped[0].table.qualified_name,
        f"{'; '.join(lines)}. Nothing was published. If the source really lost those rows, publish the held "
        f"capture with `python -m ingestion approve {names}` (or rerun with --allow-mass-delete); if the "
        "snapshot was truncated, fix it and run again",
    )


def approve_held(lake: Lake, table: Table, lock: LakeLock) -> CaptureRecord:
    """Publish the capture the circuit breaker held for `table`, exactly as it was captured."""
    with tempfile.TemporaryDirectory(prefix="lago-approve-") as tmp:
        lock.check()
        store = TableStore(lake, table)
        state = store.load_state()
        store.settle(state)
        held, data, snapshot = held_files(store, Path(tmp))
        if state.snapshot_key != held.base_snapshot or state.last_sequence != held.base_sequence:
            raise LakeStateError(
                table.qualified_name,
                f"the table was captured again after capture {held.record.capture_id} was held, so its changes no "
                "longer apply",
                "run the capture again (with --allow-mass-delete if the deletes are real)",
            )
        prepared = PreparedCapture(table, state, held.record, data, snapshot, time.monotonic())
        store.stage(prepared)
        lock.check()
        record = store.publish(prepared)
    log.info(
        "%s: held capture %s approved and published: I=%d U=%d D=%d, sequences %d..%d",
        table.qualified_name,
        record.capture_id,
        record.inserts,
        record.updates,
        record.deletes,
        record.first_sequence,
        record.last_sequence,
    )
    return record


def run_capture(
    lake: Lake,
    source: Source,
    tables: list[Table],
    reader: SnapshotReader,
    options: RunOptions,
) -> dict[str, CaptureRecord | None]:
    """Capture `tables` of `source` once. Raises on the first failing table."""

    def describe(record: CaptureRecord) -> str:
        if record.kind == "unchanged":
            return f"unchanged, {record.snapshot_rows} rows in snapshot"
        return (
            f"{record.kind}, {record.snapshot_rows} rows in snapshot, I={record.inserts} U={record.updates} "
            f"D={record.deletes}, sequences {record.first_sequence}..{record.last_sequence}"
        )

    return run_tables(
        lake,
        tables,
        reader.simulated_days,
        options,
        lambda table, workdir, day: prepare_capture(lake, table, reader, workdir, day, options, tuple(tables)),
        describe,
    )
