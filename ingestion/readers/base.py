"""The two reader contracts, below the engine that calls them (readers never import the engine).

A snapshot reader provides one typed Parquet snapshot per table, in a local work folder; an event reader the
events that arrived since the last batch. `simulated_days` tells the engine whether the reader's clock is the
simulator's day counter (all tables of a run then move to the same day) instead of the engine branching on a
reader's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from ingestion.catalog import Table


@dataclass(frozen=True)
class CaptureContext:
    """What a reader may know about the capture it serves."""

    workdir: Path
    # The simulator's clock: the day this capture represents (0 = the first capture).
    day: int = 0


class SnapshotReader(Protocol):
    """Produces the current full state of a table as a Parquet file with the table's declared schema."""

    name: str
    simulated_days: bool

    def read(self, table: Table, context: CaptureContext) -> Path:
        """Write the snapshot of `table` under `context.workdir` and return the file's path."""
        ...

    def available_tables(self, tables: list[Table]) -> list[Table]:
        """The subset of `tables` this reader can serve (a CSV folder may lack some files)."""
        ...


@dataclass(frozen=True)
class EventContext:
    """What an event reader may know about the batch it serves."""

    workdir: Path
    # The batch's moment: the arrival time of events whose reader has no clock of its own.
    arrived_at: datetime
    # The simulator's clock: the day this batch represents (0 = the first batch).
    day: int = 0


class EventReader(Protocol):
    """Writes the events that arrived since the last batch as Parquet: `_ingested_at`, then declared columns."""

    name: str
    simulated_days: bool
    # True when the reader re-reads all its input each time (a CSV folder): rows already published are dropped.
    skip_published: bool

    def read(self, table: Table, context: EventContext) -> Path: ...

    def available_tables(self, tables: list[Table]) -> list[Table]: ...
