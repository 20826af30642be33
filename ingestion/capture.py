"""One capture run: for each table, read a snapshot, diff it, publish the changes, advance the state.

The order of steps is what makes a crash harmless:

1. the new snapshot is staged under `_ingestion/` (write-once, invisible to dbt);
2. `pending.json` records the capture (its id, sequences and counts);
3. the change file is published under `raw/` (write-once, atomic);
4. `state.json` advances (one atomic write);
5. `pending.json` and the previous snapshot are removed.

A run first settles whatever a crashed run left: a pending capture whose data file is published (or that had no
changes) is committed, exactly as the crashed run would have; one whose data file never appeared is discarded and
captured again. Either way the lake ends with the change set of a run that never crashed.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingestion import cdc
from ingestion.catalog import Source, Table
from ingestion.lake import Lake
from ingestion.readers.base import CaptureContext, SnapshotReader
from ingestion.state import (
    CaptureRecord,
    LakeLock,
    TableState,
    capture_id_of,
    clear_pending,
    data_key,
    load_pending,
    load_state,
    moment_of,
    save_pending,
    save_state,
    snapshot_key,
)

log = logging.getLogger(__name__)

FAILPOINT_ENV = "LAGO_FAILPOINT"


def failpoint(name: str) -> None:
    """Crash the process here when the reliability tests ask for it (LAGO_FAILPOINT=<name>)."""
    if os.environ.get(FAILPOINT_ENV) == name:
        log.error("failpoint %s: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class RunOptions:
    lock_wait: float = 0.0
    workdir: Path | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


def settle_pending(lake: Lake, table: Table, state: TableState) -> CaptureRecord | None:
    """Finish or discard the capture a crashed run left behind. Returns the record when it was committed.

    Shared by snapshot captures and event batches: both stage, record `pending.json`, publish, then commit.
    """
    pending = load_pending(lake, table)
    if pending is None:
        return None
    last = state.last_capture
    if last is not None and last.capture_id >= pending.capture_id:
        log.info("%s: capture %s was already committed; clearing its marker", table.qualified_name, pending.capture_id)
        cleanup(lake, table, state, None)
        return None
    if pending.data_key is not None and not lake.exists(pending.data_key):
        log.warning(
            "%s: discarding interrupted capture %s (its data was never published)",
            table.qualified_name,
            pending.capture_id,
        )
        if pending.snapshot_key:
            lake.delete(pending.snapshot_key)
        clear_pending(lake, table)
        return None
    log.warning("%s: completing interrupted capture %s", table.qualified_name, pending.capture_id)
    previous = state.snapshot_key
    pending.recovered = True
    commit(lake, table, state, pending)
    cleanup(lake, table, state, previous)
    return pending


def commit(lake: Lake, table: Table, state: TableState, record: CaptureRecord) -> None:
    """Advance the table's state past `record`: one atomic write."""
    state.last_sequence = max(state.last_sequence, record.last_sequence)
    state.snapshot_key = record.snapshot_key or state.snapshot_key
    state.captures.append(record)
    save_state(lake, table, state)


def cleanup(lake: Lake, table: Table, state: TableState, previous: str | None) -> None:
    """Drop the pending marker and the snapshot the committed state no longer points at."""
    failpoint("before-cleanup")
    clear_pending(lake, table)
    if previous and previous != state.snapshot_key:
        lake.delete(previous)


def capture_table(
    lake: Lake,
    table: Table,
    reader: SnapshotReader,
    workdir: Path,
    day: int | None,
    now: Callable[[], datetime],
) -> CaptureRecord:
    started = time.monotonic()
    state = load_state(lake, table)
    recovered = settle_pending(lake, table, state)
    if recovered is not None:
        return recovered

    table_dir = workdir / table.source / table.name
    table_dir.mkdir(parents=True, exist_ok=True)
    snapshot = reader.read(table, CaptureContext(table_dir, day or 0))

    captured_at = now().astimezone(UTC)
    last = state.last_capture
    if last is not None and captured_at <= moment_of(last.capture_id):
        captured_at = moment_of(last.capture_id) + timedelta(microseconds=1)
    capture_id = capture_id_of(captured_at)
    first_sequence = state.last_sequence + 1
    changes = table_dir / f"changes_{capture_id}.parquet"

    if state.snapshot_key is None:
        kind = "full-load"
        result = cdc.full_load(table, snapshot, captured_at, first_sequence, changes)
    else:
        previous_file = lake.download(state.snapshot_key, table_dir / "previous.parquet")
        result = cdc.diff(table, previous_file, snapshot, captured_at, first_sequence, changes)
        kind = "cdc" if result.counts.total else "unchanged"

    record = CaptureRecord(
        capture_id=capture_id,
        kind=kind,
        data_key=data_key(table, kind, capture_id) if kind != "unchanged" else None,
        snapshot_key=snapshot_key(table, capture_id),
        first_sequence=first_sequence,
        last_sequence=result.last_sequence if result.counts.total else state.last_sequence,
        inserts=result.counts.inserts,
        updates=result.counts.updates,
        deletes=result.counts.deletes,
        snapshot_rows=result.snapshot_rows,
        reader=reader.name,
        day=day,
    )
    previous = state.snapshot_key
    lake.publish(snapshot, record.snapshot_key)
    failpoint("after-stage-snapshot")
    save_pending(lake, table, record)
    failpoint("after-pending")
    if record.data_key is not None:
        lake.publish(changes, record.data_key)
    failpoint("after-publish")
    record.seconds = round(time.monotonic() - started, 3)
    commit(lake, table, state, record)
    failpoint("after-state")
    cleanup(lake, table, state, previous)
    for path in (snapshot, changes, table_dir / "previous.parquet"):
        path.unlink(missing_ok=True)
    return record


def simulator_days(states: dict[str, TableState]) -> dict[str, int | None]:
    """The simulated day each table captures in this run; None for a table already at the run's day.

    All tables move together: a run captures day max+1, unless an earlier run was interrupted with some tables
    behind, in which case this run brings those up to the day the others reached.
    """
    last_days = {
        name: (s.last_capture.day if s.last_capture and s.last_capture.day is not None else -1)
        for name, s in states.items()
    }
    highest = max(last_days.values(), default=-1)
    behind = [name for name, day in last_days.items() if day < highest]
    target = highest if behind else highest + 1
    return {name: (target if day < target else None) for name, day in last_days.items()}


def run_tables(
    lake: Lake,
    tables: list[Table],
    reader_name: str,
    options: RunOptions,
    capture_one: Callable[[Table, Path, int | None], CaptureRecord],
    describe: Callable[[CaptureRecord], str],
) -> list[CaptureRecord]:
    """Capture each table once with `capture_one`, holding the lake's lock; logs one line per table.

    The simulator's tables move through simulated days together (see `simulator_days`).
    """
    records: list[CaptureRecord] = []
    with (
        LakeLock(lake, wait=options.lock_wait),
        tempfile.TemporaryDirectory(prefix="lago-capture-", dir=options.workdir) as tmp,
    ):
        days: dict[str, int | None] = {t.name: None for t in tables}
        if reader_name == "simulator":
            days = simulator_days({t.name: load_state(lake, t) for t in tables})
        for table in tables:
            if reader_name == "simulator" and days[table.name] is None:
                log.info("%s: already captured for this simulated day", table.qualified_name)
                continue
            record = capture_one(table, Path(tmp), days[table.name])
            log.info(
                "%s: %s%s, %.2fs%s",
                table.qualified_name,
                describe(record),
                f", day {record.day}" if record.day is not None else "",
                record.seconds,
                " (recovered)" if record.recovered else "",
            )
            records.append(record)
    return records


def run_capture(
    lake: Lake,
    source: Source,
    tables: list[Table],
    reader: SnapshotReader,
    options: RunOptions | None = None,
) -> list[CaptureRecord]:
    """Capture `tables` of `source` once. Raises on the first failing table."""
    options = options or RunOptions()

    def describe(record: CaptureRecord) -> str:
        return (
            f"{record.kind}, {record.snapshot_rows} rows in snapshot, I={record.inserts} U={record.updates} "
            f"D={record.deletes}, sequences {record.first_sequence}..{record.last_sequence}"
        )

    return run_tables(
        lake,
        tables,
        reader.name,
        options,
        lambda table, workdir, day: capture_table(lake, table, reader, workdir, day, options.now),
        describe,
    )
