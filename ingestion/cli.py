"""Command line: `python -m ingestion [run|schedule|stream|status|approve|verify|drop-slot] ...`."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ingestion import dbt_packages
from ingestion.breaker import load_held
from ingestion.catalog import DATABASE_MODES, Catalog, DatabaseMode, Source, Table, load_catalog, validate_identifier
from ingestion.config import DEFAULT_LAKE, Config, dbt_project_dir
from ingestion.dbt_worker import DbtWorker
from ingestion.errors import (
    IngestionError,
    LakeError,
    LakeLockedError,
    MissingOptionError,
    OptionError,
    UncapturedLakeError,
    interrupted_query,
)
from ingestion.lake import Lake, open_lake, os_error_text
from ingestion.lock import LakeLock
from ingestion.readers.registry import DEFAULT_DATASET, DEFAULT_READER, READERS, ReaderOptions, reader_kind
from ingestion.run import RunRequest, RunResult, choose_sources, run
from ingestion.state import LOG_READER, CaptureRecord, moment_of
from ingestion.table_store import TableStore

log = logging.getLogger("ingestion")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lake",
        default=None,
        help=f"lake root: a folder or s3://bucket/prefix (default: env LAKE_URI, else {DEFAULT_LAKE})",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="declared source system (default: every source for the simulator and for status; for another reader, "
        "or with --tables, the one declared source it can read)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _add_run(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument(
        "--from",
        dest="reader",
        choices=list(READERS),
        default=DEFAULT_READER,
        help="where snapshots come from: "
        + "; ".join(f"{kind.name}: {kind.summary}" for kind in READERS.values())
        + f" (default: {DEFAULT_READER})",
    )
    parser.add_argument(
        "--dsn",
        help="--from postgres: the database's connection string (default: env LAGO_POSTGRES_DSN); a password in "
        "it is visible to other users of this machine in the process list, the variable is not",
    )
    parser.add_argument(
        "--mode",
        choices=list(DATABASE_MODES),
        default=None,
        help="--from postgres: capture every table in this mode for this run (default: each table's "
        "meta.database_mode, else snapshot)",
    )
    parser.add_argument("--path", type=Path, help="folder of <table>.csv files (--from csv)")
    parser.add_argument("--tables", help="comma-separated subset of the source's tables")
    parser.add_argument("--scale", type=int, default=10_000, help="simulator: customers on day 0")
    parser.add_argument("--seed", type=int, default=42, help="simulator: random seed")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="kaggle dataset")
    parser.add_argument(
        "--arrival-column",
        help="events sources, --from csv: take each event's arrival time from this column (default: now)",
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        help="seconds to wait for another run's lock before giving up (default: 0)",
    )
    parser.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="publish a capture even when it deletes or drops more of a table than its circuit breaker allows",
    )
    parser.add_argument(
        "--single-writer",
        action="store_true",
        help="S3: skip the check that the server enforces conditional writes; only for a lake that has exactly "
        "one writer by construction (the lock and write-once publishing rely on those writes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion",
        description="Capture source snapshots as CDC Parquet files in a lake (local folder or S3).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command")
    _add_run(commands.add_parser("run", help="capture every table once (the default command)"))
    schedule = commands.add_parser("schedule", help="capture on an interval until interrupted")
    _add_run(schedule)
    schedule.add_argument(
        "--every",
        required=True,
        help="period between the starts of two captures, e.g. 30s, 15m, 6h, 1d (a capture that overruns skips "
        "the ticks it missed)",
    )
    schedule.add_argument(
        "--dbt-build",
        action="store_true",
        help="run `dbt build` after each capture: the whole project at the first tick, then only what is downstream "
        "of the tables whose captures changed something since the last build (none: no build)",
    )
    schedule.add_argument("--dbt-target", default="dev", help="dbt target for --dbt-build (default: dev)")
    schedule.add_argument("--max-runs", type=int, default=None, help="stop after this many captures")
    stream = commands.add_parser(
        "stream",
        help="follow a database's write-ahead log (log mode) until interrupted, publishing changes within --latency "
        "seconds; Ctrl-C or SIGTERM stops after publishing and confirming what was decoded",
    )
    _add_run(stream)
    stream.set_defaults(reader="postgres")
    stream.add_argument(
        "--latency",
        type=_seconds,
        default=DEFAULT_LATENCY_SECONDS,
        help="seconds between a change's arrival and its file's publishing, at most "
        f"(default {DEFAULT_LATENCY_SECONDS:g})",
    )
    status = commands.add_parser(
        "status", help="show each table's last capture and any held or interrupted capture (--json: a document)"
    )
    _add_common(status)
    status.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (format in docs/operations.md) instead of the table",
    )
    status.add_argument(
        "--dsn",
        help="log mode: the database whose replication slots to report (default: env LAGO_POSTGRES_DSN; without "
        "either, slots are not reported)",
    )
    status.add_argument(
        "--lag-warning",
        type=int,
        default=None,
        help="log mode: warn when a slot holds more than this many bytes of write-ahead log (default 1 GiB)",
    )
    drop = commands.add_parser(
        "drop-slot",
        help="drop the replication slot and publication a lake follows a source's log through (the lake keeps its "
        "state; a later log capture takes a new slot and diffs against the lake)",
    )
    _add_common(drop)
    drop.add_argument("--dsn", help="the database (default: env LAGO_POSTGRES_DSN)")
    approve = commands.add_parser(
        "approve", help="publish a capture the circuit breaker held (exit 6), exactly as it was captured"
    )
    approve.add_argument("tables", nargs="+", metavar="SOURCE.TABLE", help="e.g. loyalty.clientes")
    approve.add_argument("--lake", default=None, help="lake root (default: env LAKE_URI, else ./lake)")
    approve.add_argument("--wait", type=_seconds, default=0.0, help="seconds to wait for the lake's lock")
    approve.add_argument("--single-writer", action="store_true", help="as for run")
    approve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verify = commands.add_parser(
        "verify",
        help="compare tables in their source with the lake's replayed change log: equal, or the keys that differ "
        "(exit 1)",
    )
    verify.add_argument("tables", nargs="+", metavar="SOURCE.TABLE", help="e.g. loyalty.clientes")
    verify.add_argument("--lake", default=None, help="lake root (default: env LAKE_URI, else ./lake)")
    verify.add_argument(
        "--from",
        dest="reader",
        choices=VERIFY_READERS,
        default="postgres",
        help="where the source is read (default: postgres)",
    )
    verify.add_argument("--dsn", help="--from postgres: the connection string (default: env LAGO_POSTGRES_DSN)")
    verify.add_argument("--path", type=Path, help="--from csv: the folder of <table>.csv files")
    verify.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


# a simulation has no current state of its own to compare with: every other reader of snapshots can be verified
VERIFY_READERS = [name for name, kind in READERS.items() if kind.snapshots is not None and not kind.every_source]


MAX_INTERVAL_SECONDS = 366 * 86400
# `stream`: a change reaches the lake within about this many seconds of its commit
DEFAULT_LATENCY_SECONDS = 5.0
DISTRIBUTION = "lago-mago"


def package_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more (`nan` would wait forever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds, 0 or more")
    return value


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match:
        raise OptionError("--every", "use a number and a unit, e.g. 30s, 15m, 6h, 1d", value=text)
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds <= 0:
        raise OptionError("--every", "must be positive")
    if seconds > MAX_INTERVAL_SECONDS:
        raise OptionError("--every", "at most 366d", value=text)
    return seconds


def _lake_uri(args: argparse.Namespace, config: Config) -> str:
    return str(args.lake) if args.lake is not None else (config.lake_uri or DEFAULT_LAKE)


def _lake(args: argparse.Namespace, config: Config, *, create: bool = True) -> Lake:
    return open_lake(_lake_uri(args, config), create=create, s3=config.s3)


def parse_tables(text: str | None) -> tuple[str, ...] | None:
    """`--tables a,b`: plain identifiers, each once (None: the source's every table)."""
    if not text:
        return None
    names = tuple(validate_identifier(n.strip(), "table") for n in text.split(",") if n.strip())
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        # one run captures a table once: two captures in one run would share their sequences
        raise OptionError("--tables", f"names {', '.join(repeated)} more than once")
    return names


def run_request(
    catalog: Catalog, config: Config, args: argparse.Namespace, mode: DatabaseMode | None = None
) -> RunRequest:
    """`run`'s (and `schedule`'s, `stream`'s) options as the run service's request."""
    tables = parse_tables(args.tables)
    return RunRequest(
        lake=_lake_uri(args, config),
        sources=choose_sources(catalog, args.reader, args.source, tables),
        reader=args.reader,
        reader_options=ReaderOptions(
            path=args.path,
            scale=args.scale,
            seed=args.seed,
            dataset=args.dataset,
            arrival_column=args.arrival_column,
            dsn=args.dsn,
            mode=args.mode or mode,
        ),
        tables=tables,
        lock_wait=args.wait,
        allow_mass_delete=args.allow_mass_delete,
        single_writer=args.single_writer,
    )


def command_stream(catalog: Catalog, config: Config, args: argparse.Namespace) -> int:
    """Follow the log of a database source's tables (log mode) until interrupted. A first Ctrl-C (or SIGTERM)
    stops once the transaction being read has ended, after publishing what was decoded and confirming it to the
    slot; nothing is lost or published twice either way (a crash is as harmless, see `log_capture.py`)."""
    from ingestion.log_capture import Follow

    stop = threading.Event()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        log.info("stopping: publishing what was read, then confirming it (signal %d)", signum)
        stop.set()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    request = dataclasses.replace(
        run_request(catalog, config, args, mode="log"), follow=Follow(latency=args.latency, stop=stop)
    )
    run(config, catalog, request)
    log.info("stream stopped")
    return 0


def command_drop_slot(catalog: Catalog, config: Config, args: argparse.Namespace) -> int:
    from ingestion.identity import read_identity
    from ingestion.postgres.connection import resolve_dsn
    from ingestion.postgres.replication import drop_lake_slot

    if args.source is None:
        raise MissingOptionError("drop-slot", "--source", "source whose slot to drop")
    source = catalog.source(args.source)
    lake = _lake(args, config, create=False)
    identity = read_identity(lake)
    if identity is None:
        raise UncapturedLakeError(lake.uri, "it follows no slot")
    name, dropped = drop_lake_slot(resolve_dsn(args.dsn, config.postgres_dsn), identity.lake_id, source.name)
    log.info("slot %s %s; publication %s dropped", name, "dropped" if dropped else "was not there", name)
    return 0


def command_run(catalog: Catalog, config: Config, args: argparse.Namespace) -> int:
    run(config, catalog, run_request(catalog, config, args))
    return 0


def command_schedule(catalog: Catalog, config: Config, args: argparse.Namespace) -> int:
    """Capture every `--every` (a period: starts are `--every` apart) until interrupted or `--max-runs`.

    A lock conflict skips the tick; a first Ctrl-C (or SIGTERM) stops after the current step, also during
    `dbt build`, which runs in its own session so the terminal's Ctrl-C does not reach it; a second one stops dbt.
    """
    interval = parse_interval(args.every)
    # a usage error (no such source, an ambiguous one) stops the command before its first tick
    request = run_request(catalog, config, args)
    stop = threading.Event()
    dbt = DbtWorker(dbt_project_dir())

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and dbt.building:
            log.warning("second interrupt: stopping dbt build")
            dbt.interrupt()
            return
        log.info("stopping after the current step (signal %d)", signum)
        stop.set()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return _schedule(catalog, config, args, request, interval, stop, dbt)
    finally:
        dbt.close()


def _schedule(
    catalog: Catalog,
    config: Config,
    args: argparse.Namespace,
    request: RunRequest,
    interval: float,
    stop: threading.Event,
    dbt: DbtWorker,
) -> int:
    runs = 0
    builds = BuildPlan()
    next_start = time.monotonic()
    while not stop.is_set():
        runs += 1
        try:
            result = run(config, catalog, request)
        except LakeLockedError as locked:
            log.warning("capture %d skipped: %s; trying again at the next tick", runs, locked)
        else:
            builds.captured(result)
            selection = builds.selection()
            if args.dbt_build and selection == []:
                log.info("no capture changed anything since the last dbt build: nothing to build")
            elif args.dbt_build:
                code = _dbt_build(args.dbt_target, dbt, selection)
                if stop.is_set():
                    break
                if code != 0:
                    log.error("dbt build failed with exit code %d", code)
                    return code
                builds.built()
        if args.max_runs is not None and runs >= args.max_runs:
            break
        next_start += interval
        now = time.monotonic()
        if next_start < now:
            missed = math.ceil((now - next_start) / interval)
            log.warning("the capture took longer than --every %s: %d tick(s) skipped", args.every, missed)
            next_start += missed * interval
        log.info("next capture in %.0f s", next_start - now)
        stop.wait(next_start - now)
    log.info("schedule stopped after %d capture(s)", runs)
    return 0


class BuildPlan:
    """What the scheduler's next `dbt build` selects. The first build of a scheduler is the whole project: the
    warehouse may be behind the lake (captures before the scheduler started, a build that failed). After a build
    that succeeded, only the tables whose captures published changes since then need building, with everything
    downstream of them; a tick whose captures changed nothing builds nothing (every model is a function of the
    lake's changes, so a build without a new file would change no row)."""

    def __init__(self) -> None:
        self._built_once = False
        self._changed: set[tuple[str, str]] = set()

    def captured(self, result: RunResult) -> None:
        for source_run in result.sources:
            for table, record in source_run.records.items():
                if record is not None and record.data_key is not None:
                    self._changed.add((source_run.source.name, table))

    def selection(self) -> list[str] | None:
        """dbt selectors for the next build: None for the whole project, [] for no build."""
        if not self._built_once:
            return None
        return [f"source:{source}.{table}+" for source, table in sorted(self._changed)]

    def built(self) -> None:
        self._built_once = True
        self._changed.clear()


def _dbt_build(target: str, dbt: DbtWorker, selection: list[str] | None = None) -> int:
    # a fresh clone's first build: install the project's local packages first, as the quick start's `dbt deps`
    if (dbt.project / "dbt_project.yml").is_file() and dbt_packages.ensure_installed(dbt.project, "dbt"):
        log.info("installed the dbt project's packages (dbt deps)")
    # the command the worker's build equals (it runs in-process, on the manifest it parsed once)
    command = ["dbt", "build", "--target", target, "--exclude-resource-type", "unit_test"]
    command += ["--select", *selection] if selection else []
    log.info("running %s", " ".join(command))
    return dbt.build(target, selection)


def command_approve(catalog: Catalog, config: Config, args: argparse.Namespace) -> int:
    tables = _named_tables(catalog, args.tables, "approve")
    lake = _lake(args, config, create=False)
    if not args.single_writer:
        lake.verify_conditional_writes()
    with LakeLock(lake, wait=args.wait) as lock:
        for table in tables:
            from ingestion.capture import approve_held

            approve_held(lake, table, lock)
    return 0


def _named_tables(catalog: Catalog, names: list[str], command: str) -> list[Table]:
    tables = []
    for name in names:
        source_name, dot, table_name = name.partition(".")
        if not dot:
            raise OptionError(command, "name the table as <source>.<table>, e.g. loyalty.clientes", value=name)
        tables.append(catalog.source(source_name).table(table_name))
    return tables


def command_verify(catalog: Catalog, config: Config, args: argparse.Namespace) -> int:
    """Print each table's receipt; exit 0 when every table is equal in its source and the lake, else 1."""
    from ingestion.verify import verify_table

    tables = _named_tables(catalog, args.tables, "verify")
    kind = reader_kind(args.reader)
    # the source is read whole, in one snapshot, whatever mode its captures use
    options = ReaderOptions(path=args.path, dsn=args.dsn, mode="snapshot" if kind.database else None)
    reader = kind.snapshot_reader(options, config)
    lake = _lake(args, config, create=False)
    equal = True
    with tempfile.TemporaryDirectory(prefix="lago-verify-") as tmp:
        for table in tables:
            receipt = verify_table(lake, table, reader, Path(tmp) / table.qualified_name, config.duckdb_memory_limit)
            for line in receipt.describe():
                print(line)
            equal = equal and receipt.equal
    sys.stdout.flush()
    return 0 if equal else 1


def command_status(catalog: Catalog, config: Config, args: argparse.Namespace) -> int:
    """Print each table's captures. A reader that stops reading (`status | head`) ends the command quietly with
    exit 0, as it does for other Unix tools whose output was cut short by the reader."""
    lake = _lake(args, config, create=False)
    sources = [catalog.source(args.source)] if args.source is not None else list(catalog.sources.values())
    slots = log_slots(lake, sources, args.dsn or config.postgres_dsn, args.lag_warning)
    try:
        if args.json:
            document = {
                "format": STATUS_FORMAT,
                "lake": lake.uri,
                "tables": [table_status(lake, source, t) for source in sources for t in source.tables.values()],
                "slots": slots,
            }
            sys.stdout.write(json.dumps(document, indent=1) + "\n")
        else:
            for source in sources:
                _print_status(lake, source)
                for slot in slots:
                    if slot["source"] == source.name:
                        _print_slot(slot)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader is gone: what is left to print, and Python's flush of stdout at exit, go nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def log_slots(lake: Lake, sources: list[Source], dsn: str | None, warning: int | None) -> list[dict[str, object]]:
    """Log mode: the replication slot of each source the lake has log captures of, with how far behind the server's
    position it is (the write-ahead log the server keeps for it). Empty without a database to ask."""
    from ingestion.identity import read_identity

    logged = [s for s in sources if any(r.reader == LOG_READER for t in s.tables.values() for r in _captures(lake, t))]
    identity = read_identity(lake) if logged else None
    if not logged or identity is None:
        return []
    if dsn is None:
        log.warning("status: log mode slots are not shown without a database (--dsn or env LAGO_POSTGRES_DSN)")
        return []
    from ingestion.postgres.replication import DEFAULT_LAG_WARNING_BYTES, lake_slot, slot_name

    threshold = DEFAULT_LAG_WARNING_BYTES if warning is None else warning
    found: list[dict[str, object]] = []
    for source in logged:
        info = lake_slot(dsn, identity.lake_id, source.name)
        lag = info.lag_bytes if info is not None else None
        found.append(
            {
                "source": source.name,
                "slot": slot_name(identity.lake_id, source.name),
                "exists": info is not None,
                "wal_status": info.wal_status if info is not None else None,
                "active": info.active if info is not None else False,
                "lag_bytes": lag,
                "lag_warning_bytes": threshold,
                "warning": lag is not None and lag > threshold,
            }
        )
    return found


def _captures(lake: Lake, table: Table) -> list[CaptureRecord]:
    return TableStore(lake, table).load_state().captures


def _print_slot(slot: dict[str, object]) -> None:
    if not slot["exists"]:
        print(f"  slot {slot['slot']}: gone; the next log capture takes a new one and diffs against the lake")
        return
    lag = slot["lag_bytes"]
    behind = f"{int(lag) / (1 << 20):.1f} MiB behind the server" if isinstance(lag, int) else "never read"
    print(f"  slot {slot['slot']}: {behind}, wal_status {slot['wal_status']}, {'active' if slot['active'] else 'idle'}")
    if slot["warning"]:
        log.warning(
            "slot %s holds %s bytes of write-ahead log (over %s): run a log capture, or drop the slot with "
            "`python -m ingestion drop-slot --source %s`",
            slot["slot"],
            lag,
            slot["lag_warning_bytes"],
            slot["source"],
        )


# the version of `status --json`'s document: a field is only ever added; a change of meaning is a new format
STATUS_FORMAT = 1


def _moment(capture_id: str) -> str:
    return moment_of(capture_id).isoformat()


def _capture(record: CaptureRecord) -> dict[str, object]:
    return {
        "capture_id": record.capture_id,
        "captured_at": _moment(record.capture_id),
        "kind": record.kind,
        "inserts": record.inserts,
        "updates": record.updates,
        "deletes": record.deletes,
        "rows": record.snapshot_rows,
        # null when the capture published no row (unchanged, no events)
        "sequences": [record.first_sequence, record.last_sequence]
        if record.last_sequence >= record.first_sequence
        else None,
        "file": record.data_key,
        "recovered": record.recovered,
    }


def table_status(lake: Lake, source: Source, table: Table) -> dict[str, object]:
    """One table's object of `status --json` (documented in docs/operations.md)."""
    store = TableStore(lake, table)
    state = store.load_state()
    last = state.last_capture
    pending = store.load_pending()
    found = load_held(store)
    held: dict[str, object] | None = None
    if found is not None:
        held = {
            **_capture(found[0].record),
            "reason": found[0].verdict,
            "approve": f"python -m ingestion approve {table.qualified_name}",
        }
    return {
        "source": source.name,
        "table": table.name,
        "capture": source.capture,
        "captures": len(state.captures),
        "files": sum(1 for c in state.captures if c.data_key is not None),
        "rows": last.snapshot_rows if last is not None else None,
        "last_sequence": state.last_sequence,
        "last_capture": _capture(last) if last is not None else None,
        "held": held,
        # a capture a run decided but did not finish (it stopped): the next run completes it
        "pending": _capture(pending) if pending is not None else None,
    }


def _when(capture: dict[str, object]) -> str:
    return moment_of(str(capture["capture_id"])).strftime("%Y-%m-%d %H:%M:%S")


def _counts(capture: dict[str, object]) -> str:
    return f"I={capture['inserts']} U={capture['updates']} D={capture['deletes']}"


def _print_status(lake: Lake, source: Source) -> None:
    events = source.capture == "events"
    counts = f"{'new events':>10}" if events else f"{'I':>8} {'U':>8} {'D':>8}"
    rows = "in lake" if events else "rows"
    print(f"lake {lake.uri}, source {source.name}")
    print(f"{'table':<20} {'last capture (UTC)':<20} {'kind':<10} {'files':>6} {rows:>10} {counts}  sequences")
    for table in source.tables.values():
        status = table_status(lake, source, table)
        last = status["last_capture"]
        if not isinstance(last, dict):
            print(f"{table.name:<20} {'never captured':<20}")
        else:
            numbers = (
                f"{last['inserts']:>10}"
                if events
                else f"{last['inserts']:>8} {last['updates']:>8} {last['deletes']:>8}"
            )
            first_last = last["sequences"]
            # a capture that published nothing shows the table's last sequence, never a range like 7..6
            sequences = (
                f"{first_last[0]}..{first_last[1]}"
                if isinstance(first_last, list)
                else f"- (last {status['last_sequence']})"
            )
            print(
                f"{table.name:<20} {_when(last):<20} {last['kind']:<10} {status['files']:>6} {last['rows']:>10} "
                f"{numbers}  {sequences}"
            )
        held, pending = status["held"], status["pending"]
        if isinstance(held, dict):
            print(
                f"  held: capture of {_when(held)}, {_counts(held)}, {held['rows']} rows: {held['reason']}; "
                f"publish it with `{held['approve']}`"
            )
        if isinstance(pending, dict):
            print(
                f"  pending: capture of {_when(pending)}, {_counts(pending)}, interrupted before it was committed; "
                "the next run completes it"
            )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        # the environment is read once, here, and passed down
        config = Config.from_env()
        catalog = load_catalog(project=config.project_dir)
        if args.command == "status":
            return command_status(catalog, config, args)
        if args.command == "schedule":
            return command_schedule(catalog, config, args)
        if args.command == "approve":
            return command_approve(catalog, config, args)
        if args.command == "verify":
            return command_verify(catalog, config, args)
        if args.command == "stream":
            return command_stream(catalog, config, args)
        if args.command == "drop-slot":
            return command_drop_slot(catalog, config, args)
        return command_run(catalog, config, args)
    except IngestionError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except OSError as exc:
        # the local filesystem outside the lake (TMPDIR, the work folder): full, read-only, no permission
        where = f" {exc.filename}" if exc.filename else ""
        log.error("filesystem error%s: %s", where, os_error_text(exc))
        return LakeError.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:
        if interrupted_query(exc):  # a Ctrl-C during a DuckDB query
            log.error("interrupted")
            return 130
        # DuckDB's failures to read or write its local files; DuckDB is loaded only by a command that captures
        duckdb = sys.modules.get("duckdb")
        if duckdb is not None and isinstance(exc, duckdb.IOException):
            log.error("filesystem error: %s", str(exc).splitlines()[0])
            return LakeError.exit_code
        raise
