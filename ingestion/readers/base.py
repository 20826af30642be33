"""The two reader contracts, below the engine that calls them (readers never import the engine).

A snapshot reader provides each table's current state as a `Snapshot`: a relation DuckDB reads (a Parquet file
the reader wrote, or a CSV file read and checked in the engine's own scan), with the row count it must yield;
an event reader writes the events that arrived since the last batch. `simulated_days` tells the engine whether
the reader's clock is the simulator's day counter (all tables of a run then move to the same day) instead of the
engine branching on a reader's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from ingestion.catalog import Table
from ingestion.config import DEFAULT_DUCKDB_MEMORY_LIMIT
from ingestion.duck import check_io, connect, copy_to_parquet, quote_identifier, sql_literal
from ingestion.errors import PartialSnapshotError


@dataclass(frozen=True)
class CaptureContext:
    """What a reader may know about the capture it serves."""

    workdir: Path
    # The simulator's clock: the day this capture represents (0 = the first capture).
    day: int = 0
    # the cap of every DuckDB connection the reader opens
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    # what this reader kept at its last capture of the table (`Snapshot.reader_state`), None before the first
    previous: Mapping[str, Any] | None = None
    # every table the run reads from this reader, so a reader that takes one consistent cut for all of them can
    # prepare it for all before the first read
    run_tables: tuple[Table, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """A table's current state as the engine reads it."""

    # a DuckDB relation (SQL) with exactly the declared columns, in their declared types
    relation: str
    # the rows the relation must yield, counted apart from the read that yields them (a Parquet footer, a CSV's
    # lines): the engine checks its diff against it, so a row a parser skipped can never pass for a delete
    expected_rows: Callable[[], int]
    # the Parquet file the relation reads, when the reader wrote one: it becomes the table's stored snapshot as is
    file: Path | None = None
    # reads the source again the slow way, for a relation DuckDB refused: raises an error that names what is
    # wrong (table, file, line, column, value), or returns the same state as a Parquet snapshot
    careful: Callable[[], Snapshot] | None = None
    # raises when the source changed since the snapshot was taken (a file replaced or rewritten mid-capture): the
    # engine calls it after its last read of the relation, so what it publishes comes from one version
    verify: Callable[[], None] | None = None
    # True when the relation holds only the rows the source says changed (a database cursor's window): a row of
    # the stored state it lacks is unchanged, not deleted; the engine applies it to the stored state by key
    partial: bool = False
    # with `partial`: a relation of every key in the source, read in the same cut, when the reader scanned them;
    # a key of the stored state missing from it was deleted
    keys: str | None = None
    # what the reader keeps for its next capture of the table, stored with this capture (see `CaptureContext`)
    reader_state: dict[str, Any] | None = None
    # the consistent cut of the source the relation was read in, when the reader reads every table of a run in one
    # (a database snapshot); stored with the capture (`CaptureRecord.cut`)
    cut: str | None = None

    def verify_unchanged(self) -> None:
        if self.verify is not None:
            self.verify()

    def to_parquet(self, dest: Path, table: Table, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> Path:
        """The snapshot as one Parquet file: the reader's own, or `dest` written from the relation in the source's
        order, which the next diff joins fastest (read the careful way when DuckDB refuses it or yields other than
        the expected rows)."""
        if self.file is not None:
            return self.file
        con = connect(dest.parent, ordered=True, memory_limit=memory_limit)
        try:
            columns = ", ".join(quote_identifier(c) for c in table.column_names)
            rows: int | None = copy_to_parquet(con, f"select {columns} from {self.relation}", dest)
        except duckdb.Error as exc:
            check_io(exc, f"table {table.qualified_name}")
            rows = None
        finally:
            con.close()
        if rows is not None and rows == self.expected_rows():
            return dest
        if self.careful is None:
            raise PartialSnapshotError(table.qualified_name)
        return self.careful().to_parquet(dest, table, memory_limit)


def parquet_snapshot(path: Path) -> Snapshot:
    """A snapshot the reader wrote as Parquet with the declared schema; its footer says how many rows it holds."""

    def rows() -> int:
        con = duckdb.connect()
        try:
            (count,) = con.execute(f"select count(*) from read_parquet({sql_literal(str(path))})").fetchall()[0]
        finally:
            con.close()
        return int(count)

    return Snapshot(f"read_parquet({sql_literal(str(path))})", rows, file=path)


class SnapshotReader(Protocol):
    """Provides the current full state of a table with the table's declared schema."""

    name: str
    simulated_days: bool

    def read(self, table: Table, context: CaptureContext) -> Snapshot:
        """The snapshot of `table`; files it writes go under `context.workdir`."""
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
    # the cap of every DuckDB connection the reader opens
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT


class EventReader(Protocol):
    """Writes the events that arrived since the last batch as Parquet: `_ingested_at`, then declared columns."""

    name: str
    simulated_days: bool
    # True when the reader re-reads all its input each time (a CSV folder): rows already published are dropped.
    skip_published: bool

    def read(self, table: Table, context: EventContext) -> Path: ...

    def available_tables(self, tables: list[Table]) -> list[Table]: ...
