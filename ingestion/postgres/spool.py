"""One table's decoded log changes, spilled to local Parquet parts so that the memory a capture needs stays flat in
the size of a transaction: a few thousand changes are held in memory, every older one is in a part file.

The log capture keeps two spools per table: the open transaction's changes, and the committed ones of the batch it
will publish. A commit moves the first into the second (`extend`, which moves part files, never rows); a transaction
still open when a run stops is dropped with its spool, so nothing of it is ever published.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.catalog import Table


class _Fill:
    """A value to take from the key's last row: an unchanged TOASTed value, or a column a key-only delete lacks."""


FILL = _Fill()
Row = list[Any]
# I, U, D, or T: a TRUNCATE (its row is None)
Operation = Literal["I", "U", "D", "T"]
# (operation, commit time, commit LSN, row)
LogChange = tuple[Operation, datetime, int, Row | None]

# a spool writes its buffer to a part once it holds this many changes, or about this many bytes of values
SPILL_CHANGES = 10_000
SPILL_BYTES = 16 << 20

_OPERATION, _COMMITTED_AT, _LSN, _FILLED = "_spool_operation", "_spool_committed_at", "_spool_lsn", "_spool_filled"


def _size(row: Row | None) -> int:
    """A rough size of a row's values: text by its length, anything else as a machine word."""
    if row is None:
        return 8
    return sum(len(v) if isinstance(v, str) else 8 for v in row)


@dataclass
class Spool:
    table: Table
    folder: Path
    key_index: list[int]
    parts: list[Path] = field(default_factory=list)
    buffer: list[LogChange] = field(default_factory=list)
    buffered_bytes: int = 0
    count: int = 0
    # the keys of rows with a value to fill, and whether a TRUNCATE is among the changes: what a publish must read
    # from the lake's stored state
    wanted: set[tuple[Any, ...]] = field(default_factory=set)
    truncated: bool = False

    def key(self, row: Row) -> tuple[Any, ...]:
        return tuple(row[i] for i in self.key_index)

    def add(self, operation: Operation, committed_at: datetime, lsn: int, row: Row | None) -> None:
        self.buffer.append((operation, committed_at, lsn, row))
        self.count += 1
        if row is None:
            self.truncated = True
        elif any(v is FILL for v in row):
            self.wanted.add(self.key(row))
        self.buffered_bytes += _size(row)
        if len(self.buffer) >= SPILL_CHANGES or self.buffered_bytes >= SPILL_BYTES:
            self.spill()

    def spill(self) -> None:
        """Write the buffer to a new part."""
        if not self.buffer:
            return
        names = self.table.column_names
        data: dict[str, list[Any]] = {
            _OPERATION: [op for op, _, _, _ in self.buffer],
            _COMMITTED_AT: [at for _, at, _, _ in self.buffer],
            _LSN: [lsn for _, _, lsn, _ in self.buffer],
            _FILLED: [[i for i, v in enumerate(row) if v is FILL] if row else [] for _, _, _, row in self.buffer],
        }
        for index, name in enumerate(names):
            data[name] = [None if row is None or row[index] is FILL else row[index] for _, _, _, row in self.buffer]
        self.folder.mkdir(parents=True, exist_ok=True)
        part = self.folder / f"part-{uuid.uuid4().hex}.parquet"
        pq.write_table(pa.Table.from_pydict(data, schema=self._schema()), part)
        self.parts.append(part)
        self.buffer, self.buffered_bytes = [], 0

    def extend(self, other: Spool) -> None:
        """Take every change of `other` after this spool's own (its parts are moved, not copied); `other` is left
        empty."""
        if other.parts:
            self.spill()
            self.parts.extend(other.parts)
        for change in other.buffer:
            self.add(*change)
        self.count += other.count - len(other.buffer)
        self.wanted |= other.wanted
        self.truncated = self.truncated or other.truncated
        other.parts = []
        other.clear()

    def clear(self) -> None:
        """Drop every change (after a publish, or a transaction the lake already holds)."""
        for part in self.parts:
            part.unlink(missing_ok=True)
        self.parts, self.buffer, self.buffered_bytes, self.count = [], [], 0, 0
        self.wanted, self.truncated = set(), False

    def __iter__(self) -> Iterator[LogChange]:
        """Every change in the order it was added, the parts read a batch at a time."""
        names = self.table.column_names
        for part in self.parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=SPILL_CHANGES):
                for record in batch.to_pylist():
                    operation: Operation = record[_OPERATION]
                    if operation == "T":
                        yield operation, record[_COMMITTED_AT], record[_LSN], None
                        continue
                    row: Row = [record[name] for name in names]
                    for index in record[_FILLED]:
                        row[index] = FILL
                    yield operation, record[_COMMITTED_AT], record[_LSN], row
        yield from self.buffer

    def _schema(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field(_OPERATION, pa.string()),
                pa.field(_COMMITTED_AT, pa.timestamp("us", tz="UTC")),
                pa.field(_LSN, pa.int64()),
                pa.field(_FILLED, pa.list_(pa.int32())),
                *self.table.schema,
            ]
        )
