"""What every snapshot reader provides: one typed Parquet snapshot per table, in a local work folder."""

from __future__ import annotations

from dataclasses import dataclass
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

    def read(self, table: Table, context: CaptureContext) -> Path:
        """Write the snapshot of `table` under `context.workdir` and return the file's path."""
        ...

    def available_tables(self, tables: list[Table]) -> list[Table]:
        """The subset of `tables` this reader can serve (a CSV folder may lack some files)."""
        ...
