"""One capture run, end to end: the one entry point that `python -m ingestion run` (and `schedule`) and Dagster's
capture assets call.

`run(config, catalog, request)` opens the lake, checks that it enforces conditional writes, takes its lock
(waiting and taking over a stale lease as `LakeLock` does), builds each source's reader from the registry,
settles the simulated day once for the whole run, captures each source (snapshots diffed by `capture.py`, events
appended by `events.py`, both behind the circuit breaker) and returns what each table's capture did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from ingestion.catalog import Catalog, Source, Table
from ingestion.config import Config
from ingestion.errors import OptionError, SourceChoiceError, UndeclaredTablesError, UnreadTablesError, UsageError
from ingestion.lake import Lake, open_lake
from ingestion.lock import LakeLock
from ingestion.readers.registry import DEFAULT_READER, ReaderKind, ReaderOptions, reader_kind
from ingestion.state import CaptureRecord
from ingestion.table_store import load_state

# DuckDB and the readers are loaded only once a run has a lock to capture under
if TYPE_CHECKING:
    from ingestion.log_capture import Follow
    from ingestion.readers.base import EventReader, SnapshotReader

log = logging.getLogger("ingestion")

# The tables whose capture states settle a simulated run's day: the run's own (the CLI), or every declared table
# (Dagster, which captures each source in its own step of one job: the second step must find the first's day).
DayScope = Literal["run", "catalog"]


@dataclass(frozen=True)
class RunRequest:
    """One run: which lake, which sources and tables, from which reader, and how to treat the lock and the
    circuit breaker."""

    lake: str
    sources: tuple[Source, ...]
    reader: str = DEFAULT_READER
    reader_options: ReaderOptions = field(default_factory=ReaderOptions)
    # the tables of a one-source run (None: every declared table, each of which the reader must be able to read)
    tables: tuple[str, ...] | None = None
    # seconds to wait for another run's lock
    lock_wait: float = 0.0
    # publish a capture the circuit breaker would hold
    allow_mass_delete: bool = False
    # S3: skip the check that the server refuses conditional writes whose condition fails
    single_writer: bool = False
    day_scope: DayScope = "run"
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # `stream`: follow the log of every (log mode) table until stopped, instead of capturing once
    follow: Follow | None = None


@dataclass(frozen=True)
class SourceRun:
    source: Source
    # each table's capture in the run's order; None for a table the simulator had already captured for the day
    records: dict[str, CaptureRecord | None]


@dataclass(frozen=True)
class RunResult:
    lake: Lake
    # the simulated day the run captured (None: the reader has no simulated clock)
    day: int | None
    sources: tuple[SourceRun, ...]


def choose_sources(
    catalog: Catalog, reader: str, source: str | None = None, tables: tuple[str, ...] | None = None
) -> tuple[Source, ...]:
    """The sources a run captures: the one named; else every source for a reader that captures all it serves
    (the simulator) when no tables are named; else the only declared source the reader can serve that has the
    named tables. Anything else is a usage error naming the declared sources: a run never guesses."""
    if source is not None:
        return (catalog.source(source),)
    kind = reader_kind(reader)
    declared = tuple(catalog.sources)
    served = tuple(s for s in catalog.sources.values() if kind.serves(s.capture))
    if kind.every_source and tables is None and served:
        return served
    candidates = tuple(s for s in served if tables is None or all(t in s.tables for t in tables))
    if len(candidates) == 1:
        return candidates
    names = tuple(s.name for s in candidates)
    if served and not candidates:
        assert tables is not None
        raise UndeclaredTablesError(tables, reader, declared)
    if not served:
        why = f"--from {reader} reads none of the declared sources"
    else:
        why = f"--from {reader} reads sources {' and '.join(names)}" + (
            f", which all declare {', '.join(tables)}" if tables else ""
        )
    raise SourceChoiceError(reader, declared, names, why)


def run(config: Config, catalog: Catalog, request: RunRequest) -> RunResult:
    """Capture `request.sources` once, under one hold of the lake's lock. Raises on the first failure: the
    tables of a source are published together or not at all."""
    if not request.sources:
        raise UsageError("the run names no source")
    if request.tables is not None and len(request.sources) != 1:
        raise OptionError("--tables", "names the tables of one source: give --source")
    kind = reader_kind(request.reader)
    # every reader and table is settled before the lake is opened: a bad option leaves no trace in it
    plans = [_plan(source, kind, request, config) for source in request.sources]
    lake = open_lake(request.lake, s3=config.s3)
    if not request.single_writer:
        lake.verify_conditional_writes()
    with LakeLock(lake, wait=request.lock_wait) as lock:
        day = _simulated_day(lake, catalog, plans, request.day_scope)
        done = tuple(_capture(lake, lock, plan, day, request, config) for plan in plans)
    return RunResult(lake, day, done)


@dataclass(frozen=True)
class _Plan:
    """A source's reader (of the kind its capture mode needs) and tables, checked before anything is captured."""

    source: Source
    tables: list[Table]
    snapshots: SnapshotReader | None = None
    events: EventReader | None = None
    # a database's tables in log mode, followed through its write-ahead log (`log_capture.py`) with this DSN
    log_tables: list[Table] = field(default_factory=list)
    dsn: str | None = None

    @property
    def simulated_days(self) -> bool:
        reader = self.events or self.snapshots
        return reader is not None and reader.simulated_days


def _plan(source: Source, kind: ReaderKind, request: RunRequest, config: Config) -> _Plan:
    if request.reader_options.mode is not None and not kind.database:
        raise OptionError("--mode", f"applies to database readers; --from {kind.name} reads files")
    if source.capture == "events":
        events = kind.event_reader(request.reader_options, config)
        return _Plan(source, _tables(source, request.tables, events), events=events)
    if request.reader_options.arrival_column is not None:
        raise OptionError("--arrival-column", f"applies to events sources; {source.name} is captured as snapshots")
    snapshots = kind.snapshot_reader(request.reader_options, config)
    tables = _tables(source, request.tables, snapshots)
    if not kind.database:
        if request.follow is not None:
            raise OptionError("stream", f"follows a database's log; --from {kind.name} reads files")
        return _Plan(source, tables, snapshots=snapshots)
    mode = request.reader_options.mode
    logged = [t for t in tables if (mode or t.database_mode) == "log"]
    if request.follow is not None and len(logged) != len(tables):
        others = ", ".join(t.name for t in tables if t not in logged)
        raise OptionError("stream", f"follows tables in log mode; {others} of {source.name} are not (--mode log)")
    from ingestion.postgres.connection import resolve_dsn

    dsn = resolve_dsn(request.reader_options.dsn, config.postgres_dsn) if logged else None
    rest = [t for t in tables if t not in logged]
    return _Plan(source, rest, snapshots=snapshots, log_tables=logged, dsn=dsn)


def _tables(source: Source, names: tuple[str, ...] | None, reader: SnapshotReader | EventReader) -> list[Table]:
    if names is not None:
        return [source.table(name) for name in names]
    declared = list(source.tables.values())
    available = reader.available_tables(declared)
    missing = [t.name for t in declared if t not in available]
    if missing:
        raise UnreadTablesError(source.name, tuple(missing), reader.name)
    return declared


def _simulated_day(lake: Lake, catalog: Catalog, plans: list[_Plan], scope: DayScope) -> int | None:
    """The one simulated day of the run, when its readers run on the simulator's clock: every source's simulator
    moves to the same day, also when a crash left one source behind."""
    if not any(plan.simulated_days for plan in plans):
        return None
    from ingestion.capture import simulator_target_day

    if scope == "catalog":
        tables = [t for s in catalog.sources.values() for t in s.tables.values()]
    else:
        tables = [t for plan in plans for t in plan.tables]
    return simulator_target_day([load_state(lake, t) for t in tables])


def _capture(
    lake: Lake, lock: LakeLock, plan: _Plan, day: int | None, request: RunRequest, config: Config
) -> SourceRun:
    from ingestion.capture import RunOptions, run_capture
    from ingestion.events import run_events

    options = RunOptions(
        lock=lock,
        simulator_day=day,
        allow_mass_delete=request.allow_mass_delete,
        duckdb_memory_limit=config.duckdb_memory_limit,
        now=request.now,
    )
    if plan.events is not None:
        records = run_events(lake, plan.source, plan.tables, plan.events, options)
        what = "events"
    else:
        assert plan.snapshots is not None
        records = run_capture(lake, plan.source, plan.tables, plan.snapshots, options) if plan.tables else {}
        what = "capture"
        if plan.log_tables:
            from ingestion.log_capture import run_log

            assert plan.dsn is not None
            records |= run_log(lake, plan.source, plan.log_tables, plan.dsn, options, request.follow)
    captured = sum(1 for record in records.values() if record is not None)
    log.info("%s of %s into %s done: %d table(s)", what, plan.source.name, lake.uri, captured)
    return SourceRun(plan.source, records)
