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


def _settle_pending(lake: Lake, table: Table, state: TableState) -> CaptureRecord | None:
    """Finish or discard the capture a crashed run left behind. Returns the record when it was committed."""
    pending = load_pending(lake, table)
    if pending is None:
        return None
    last = state.last_capture
    if last is not None and last.capture_id >= pending.capture_id:
        log.info(
            "%s: capture %s was already committed; clearing its marker",
            table.qualified_name,
            pending.capture_id,
        )
        _cleanup(lake, table, state, pending)
        return None
    if pending.data_key is not None and not lake.exists(pending.data_key):
        log.warning(
            "%s: discarding interrupted capture %s (its data was never published)",
            table.qualified_name,
            pending.capture_id,
        )
        lake.delete(pending.snapshot_key)
        clear_pending(lake, table)
        return None
    log.warning("%s: completing interrupted capture %s", table.qualified_name, pending.capture_id)
    previous = state.snapshot_key
    pending.recovered = True
    _commit(lake, table, state, pending)
    _cleanup(lake, table, state, pending, previous)
    return pending


def _commit(lake: Lake, table: Table, state: TableState, record: CaptureRecord) -> None:
    state.last_sequence = max(state.last_sequence, record.last_sequence)
    state.snapshot_key = record.snapshot_key
    state.captures.append(record)
    save_state(lake, table, state)


def _cleanup(lake: Lake, table: Table, state: TableState, record: CaptureRecord, previous: str | None = None) -> None:
    failpoint("before-cleanup")
    clear_pending(lake, table)
    if previous is not None and previous != state.snapshot_key:
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
    recovered = _settle_pending(lake, table, state)
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
    _commit(lake, table, state, record)
    failpoint("after-state")
    _cleanup(lake, table, state, record, previous)
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


def run_capture(
    lake: Lake,
    source: Source,
    tables: list[Table],
    reader: SnapshotReader,
    options: RunOptions | None = None,
) -> list[CaptureRecord]:
    """Capture `tables` of `source` once, holding the lake's lock. Raises on the first failing table."""
    options = options or RunOptions()
    records: list[CaptureRecord] = []
    with (
        LakeLock(lake, wait=options.lock_wait),
        tempfile.TemporaryDirectory(prefix="lago-capture-", dir=options.workdir) as tmp,
    ):
        days: dict[str, int | None] = {t.name: None for t in tables}
        if reader.name == "simulator":
            states = {t.name: load_state(lake, t) for t in tables}
            days = simulator_days(states)
        for table in tables:
            if reader.name == "simulator" and days[table.name] is None:
                log.info("%s: already captured for this simulated day", table.qualified_name)
                continue
            record = capture_table(lake, table, reader, Path(tmp), days[table.name], options.now)
            log.info(
                "%s: %s%s, %d rows in snapshot, I=%d U=%d D=%d, sequences %d..%d, %.2fs%s",
                table.qualified_name,
                record.kind,
                f" day {record.day}" if record.day is not None else "",
                record.snapshot_rows,
                record.inserts,
                record.updates,
                record.deletes,
                record.first_sequence,
                record.last_sequence,
                record.seconds,
                " (recovered)" if record.recovered else "",
            )
            records.append(record)
    return records
