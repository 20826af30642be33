"""Command line: `python -m ingestion [run|schedule|status] ...`."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ingestion.capture import RunOptions, run_capture, simulator_target_day
from ingestion.catalog import Catalog, Source, Table, load_catalog, validate_identifier
from ingestion.errors import CatalogError, IngestionError
from ingestion.events import EventReader, run_events
from ingestion.lake import Lake, open_lake
from ingestion.readers.base import SnapshotReader
from ingestion.state import LakeLock, load_state

log = logging.getLogger("ingestion")

DEFAULT_LAKE = "./lake"


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lake",
        default=None,
        help=f"lake root: a folder or s3://bucket/prefix (default: env LAKE_URI, else {DEFAULT_LAKE})",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="declared source system (default: every source for the simulator and for status, else loyalty)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _add_run(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument(
        "--from",
        dest="reader",
        choices=["simulator", "kaggle", "csv"],
        default="simulator",
        help="where snapshots come from (default: simulator)",
    )
    parser.add_argument("--path", type=Path, help="folder of <table>.csv files (--from csv)")
    parser.add_argument("--tables", help="comma-separated subset of the source's tables")
    parser.add_argument("--scale", type=int, default=10_000, help="simulator: customers on day 0")
    parser.add_argument("--seed", type=int, default=42, help="simulator: random seed")
    parser.add_argument("--dataset", default="teocalvo/teomewhy-loyalty-system", help="kaggle dataset")
    parser.add_argument(
        "--arrival-column",
        help="events sources, --from csv: take each event's arrival time from this column (default: now)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for another run's lock before giving up (default: 0)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion",
        description="Capture source snapshots as CDC Parquet files in a lake (local folder or S3).",
    )
    commands = parser.add_subparsers(dest="command")
    _add_run(commands.add_parser("run", help="capture every table once (the default command)"))
    schedule = commands.add_parser("schedule", help="capture on an interval until interrupted")
    _add_run(schedule)
    schedule.add_argument("--every", required=True, help="interval, e.g. 30s, 15m, 6h, 1d")
    schedule.add_argument("--dbt-build", action="store_true", help="run `dbt build` after each capture")
    schedule.add_argument("--dbt-target", default="dev", help="dbt target for --dbt-build (default: dev)")
    schedule.add_argument("--max-runs", type=int, default=None, help="stop after this many captures")
    status = commands.add_parser("status", help="show each table's captures")
    _add_common(status)
    return parser


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match:
        raise CatalogError(f"--every {text!r}: use a number and a unit, e.g. 30s, 15m, 6h, 1d")
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds <= 0:
        raise CatalogError("--every must be positive")
    return seconds


def _lake(args: argparse.Namespace) -> Lake:
    return open_lake(args.lake or os.environ.get("LAKE_URI") or DEFAULT_LAKE)


def _tables(source: Source, args: argparse.Namespace, reader: SnapshotReader | EventReader) -> list[Table]:
    if args.tables:
        names = [validate_identifier(n.strip(), "table") for n in args.tables.split(",") if n.strip()]
        return [source.table(n) for n in names]
    declared = list(source.tables.values())
    available = reader.available_tables(declared)
    missing = [t.name for t in declared if t not in available]
    if missing:
        raise CatalogError(
            f"source {source.name}: no snapshot for declared table(s) {', '.join(missing)} from the "
            f"{reader.name} reader; provide them or limit the run with --tables"
        )
    return declared


def _reader(args: argparse.Namespace) -> SnapshotReader:
    if args.reader == "simulator":
        from ingestion.readers.simulator import SimulatorReader

        return SimulatorReader(scale=args.scale, seed=args.seed)
    if args.reader == "csv":
        from ingestion.readers.csv import CsvFolderReader

        if args.path is None:
            raise CatalogError("--from csv needs --path FOLDER (with one <table>.csv per table)")
        return CsvFolderReader(args.path)
    from ingestion.readers.kaggle import KaggleReader

    kaggle: SnapshotReader = KaggleReader(dataset=args.dataset)
    return kaggle


def _event_reader(args: argparse.Namespace) -> EventReader:
    if args.reader == "simulator":
        from ingestion.readers.hotmart import HotmartSimulatorReader

        return HotmartSimulatorReader(scale=args.scale, seed=args.seed)
    if args.reader == "csv":
        from ingestion.readers.events_csv import EventCsvFolderReader

        if args.path is None:
            raise CatalogError("--from csv needs --path FOLDER (with one <table>.csv per table)")
        return EventCsvFolderReader(args.path, arrival_column=args.arrival_column)
    raise CatalogError(f"--from {args.reader} reads snapshots; an events source reads --from simulator or csv")


def command_run_events(source: Source, args: argparse.Namespace, simulator_day: int | None = None) -> int:
    reader = _event_reader(args)
    tables = _tables(source, args, reader)
    lake = _lake(args)
    records = run_events(lake, source, tables, reader, RunOptions(lock_wait=args.wait, simulator_day=simulator_day))
    log.info("events of %s into %s done: %d table(s)", source.name, lake.uri, len(records))
    return 0


def _sources(catalog: Catalog, args: argparse.Namespace) -> list[Source]:
    if args.source is not None:
        return [catalog.source(args.source)]
    if getattr(args, "reader", "simulator") == "simulator" and not getattr(args, "tables", None):
        return list(catalog.sources.values())
    return [catalog.source("loyalty")]


def command_run(catalog: Catalog, args: argparse.Namespace) -> int:
    sources = _sources(catalog, args)
    if args.reader != "simulator" or len(sources) == 1:
        for source in sources:
            command_run_source(source, args)
        return 0
    lake = _lake(args)
    with LakeLock(lake, wait=args.wait):
        # every source's simulator moves to the same day, also when a crash left one source behind
        day = simulator_target_day([load_state(lake, t) for source in sources for t in source.tables.values()])
        for source in sources:
            command_run_source(source, args, day)
    return 0


def command_run_source(source: Source, args: argparse.Namespace, simulator_day: int | None = None) -> int:
    if source.capture == "events":
        return command_run_events(source, args, simulator_day)
    if args.arrival_column is not None:
        raise CatalogError(f"--arrival-column applies to events sources; {source.name} is captured as snapshots")
    reader = _reader(args)
    tables = _tables(source, args, reader)
    lake = _lake(args)
    records = run_capture(lake, source, tables, reader, RunOptions(lock_wait=args.wait, simulator_day=simulator_day))
    log.info("capture of %s into %s done: %d table(s)", source.name, lake.uri, len(records))
    return 0


def command_schedule(catalog: Catalog, args: argparse.Namespace) -> int:
    interval = parse_interval(args.every)
    stop = threading.Event()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        log.info("stopping after the current step (signal %d)", signum)
        stop.set()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    runs = 0
    while not stop.is_set():
        command_run(catalog, args)
        runs += 1
        if args.dbt_build:
            command = ["dbt", "build", "--target", args.dbt_target]
            log.info("running %s", " ".join(command))
            completed = subprocess.run(command, check=False)
            if completed.returncode != 0:
                log.error("dbt build failed with exit code %d", completed.returncode)
                return completed.returncode
        if args.max_runs is not None and runs >= args.max_runs:
            break
        log.info("next capture in %s", args.every)
        stop.wait(interval)
    return 0


def command_status(catalog: Catalog, args: argparse.Namespace) -> int:
    lake = _lake(args)
    for source in _sources(catalog, args):
        _print_status(lake, source)
    return 0


def _print_status(lake: Lake, source: Source) -> None:
    header = (
        f"{'table':<20} {'last capture (UTC)':<28} {'kind':<10} {'files':>6} {'rows':>10} "
        f"{'I':>8} {'U':>8} {'D':>8}  sequence"
    )
    print(f"lake {lake.uri}, source {source.name}")
    print(header)
    for table in source.tables.values():
        state = load_state(lake, table)
        last = state.last_capture
        files = sum(1 for c in state.captures if c.data_key is not None)
        if last is None:
            print(f"{table.name:<20} {'never captured':<28}")
            continue
        print(
            f"{table.name:<20} {last.capture_id:<28} {last.kind:<10} {files:>6} {last.snapshot_rows:>10} "
            f"{last.inserts:>8} {last.updates:>8} {last.deletes:>8}  {state.last_sequence}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
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
        catalog = load_catalog()
        if args.command == "status":
            return command_status(catalog, args)
        if args.command == "schedule":
            return command_schedule(catalog, args)
        return command_run(catalog, args)
    except IngestionError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
