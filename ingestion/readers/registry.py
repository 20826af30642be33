"""Every reader kind, by the name `--from` and Dagster's `reader` take, with the factories that build its readers.

A kind builds a snapshot reader (for `snapshot` sources), an event reader (for `events` sources), or both. Adding
one is a module under `readers/` plus one `register(...)` below; the CLI's choices and Dagster's check of its
config come from here. Each factory imports its module when called, so `--help` and `status` never load DuckDB or
a source's client library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ingestion.catalog import CaptureMode, DatabaseMode
from ingestion.config import Config
from ingestion.errors import ReaderError, UnknownReaderError

if TYPE_CHECKING:
    from ingestion.readers.base import EventReader, SnapshotReader

DEFAULT_READER = "simulator"
DEFAULT_DATASET = "teocalvo/teomewhy-loyalty-system"


@dataclass(frozen=True)
class ReaderOptions:
    """What a run says about its reader: `python -m ingestion run`'s options, Dagster's capture config."""

    path: Path | None = None
    scale: int = 10_000
    seed: int = 42
    dataset: str = DEFAULT_DATASET
    arrival_column: str | None = None
    # --from postgres: `--dsn`, which overrides the configuration's LAGO_POSTGRES_DSN. Dagster never sets it (its
    # run configuration is shown in the UI); a secret either way, so never in the repr
    dsn: str | None = field(default=None, repr=False)
    # --mode: every table of a database source captured in this mode for this run, whatever its declaration says
    mode: DatabaseMode | None = None


SnapshotFactory = Callable[[ReaderOptions, Config], "SnapshotReader"]
EventFactory = Callable[[ReaderOptions, Config], "EventReader"]


@dataclass(frozen=True)
class ReaderKind:
    """One `--from` choice: its name, and the factories of the readers it offers."""

    name: str
    # one line for `--help`
    summary: str
    snapshots: SnapshotFactory | None = None
    events: EventFactory | None = None
    # without --source, a run captures every source the kind serves (a simulation of all of them), instead of
    # needing to be told the one source its input belongs to (a folder, a dataset)
    every_source: bool = False
    # a database: each table is captured in its mode (`meta.database_mode`, or `--mode` for one run)
    database: bool = False

    def serves(self, capture: CaptureMode) -> bool:
        """Whether this kind can capture a source declared with `capture`."""
        return (self.snapshots if capture == "snapshot" else self.events) is not None

    def snapshot_reader(self, options: ReaderOptions, config: Config) -> SnapshotReader:
        if self.snapshots is None:
            raise ReaderError(self.name, "snapshot", f"reads events; a snapshot source reads {_serving('snapshot')}")
        return self.snapshots(options, config)

    def event_reader(self, options: ReaderOptions, config: Config) -> EventReader:
        if self.events is None:
            raise ReaderError(self.name, "events", f"reads snapshots; an events source reads {_serving('events')}")
        return self.events(options, config)


READERS: dict[str, ReaderKind] = {}


def register(kind: ReaderKind) -> ReaderKind:
    if kind.name in READERS:
        raise ValueError(f"reader kind {kind.name} is registered twice")
    READERS[kind.name] = kind
    return kind


def reader_kind(name: str) -> ReaderKind:
    if name not in READERS:
        raise UnknownReaderError(name, tuple(READERS))
    return READERS[name]


def _serving(capture: CaptureMode) -> str:
    return " or ".join(name for name, kind in READERS.items() if kind.serves(capture))


def _folder(options: ReaderOptions, kind: str) -> Path:
    if options.path is None:
        raise ReaderError(kind, "--path", "needs --path FOLDER (with one <table>.csv per table)")
    return options.path


def _simulator(options: ReaderOptions, config: Config) -> SnapshotReader:
    from ingestion.readers.simulator import SimulatorReader

    return SimulatorReader(scale=options.scale, seed=options.seed)


def _hotmart_simulator(options: ReaderOptions, config: Config) -> EventReader:
    from ingestion.readers.hotmart import HotmartSimulatorReader

    return HotmartSimulatorReader(scale=options.scale, seed=options.seed)


def _csv(options: ReaderOptions, config: Config) -> SnapshotReader:
    from ingestion.readers.csv import CsvFolderReader

    return CsvFolderReader(_folder(options, "csv"))


def _events_csv(options: ReaderOptions, config: Config) -> EventReader:
    from ingestion.readers.events_csv import EventCsvFolderReader

    return EventCsvFolderReader(_folder(options, "csv"), arrival_column=options.arrival_column)


def _kaggle(options: ReaderOptions, config: Config) -> SnapshotReader:
    from ingestion.readers.kaggle import KaggleReader

    return KaggleReader(dataset=options.dataset)


def _postgres(options: ReaderOptions, config: Config) -> SnapshotReader:
    from ingestion.postgres.connection import resolve_dsn
    from ingestion.readers.postgres import PostgresReader

    return PostgresReader(resolve_dsn(options.dsn, config.postgres_dsn), mode=options.mode)


register(ReaderKind("simulator", "a seeded simulation of every source", _simulator, _hotmart_simulator, True))
register(ReaderKind("kaggle", "the Kaggle dataset --dataset (snapshot sources)", _kaggle))
register(ReaderKind("csv", "a folder of <table>.csv files, --path", _csv, _events_csv))
register(
    ReaderKind(
        "postgres",
        "a Postgres database, --dsn or env LAGO_POSTGRES_DSN (snapshot sources; --mode)",
        _postgres,
        database=True,
    )
)
