"""One table's decoded log changes, spilled to local Parquet parts as text columns, so that the memory a capture
needs stays flat in the size of a transaction: a few thousand changes are held in memory, every older one is in a
part file, and the publish reads the parts with DuckDB (`ingestion.log_capture`), which casts the text to the
declared types and fills whole rows there.

A change is kept as pgoutput decoded it (its values in the relation's order, as text) until its buffer is spilled:
then the buffer is turned column by column into Arrow arrays, so the decoding loop does one append per change and
no Python work per value. A part's columns: the operation, the commit's time and LSN, a bit mask of the declared
columns whose value is to be filled from the key's last row (`FILLED`), then the declared columns as text.

The log capture keeps two spools per table: the open transaction's changes, and the committed ones of the batch it
will publish. A commit moves the first into the second (`extend`, which moves part files, never rows); a transaction
still open when a run stops is dropped with its spool, so nothing of it is ever published.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.catalog import Table
from ingestion.duck import quote_identifier, sql_literal
from ingestion.postgres.pgoutput import UNCHANGED, Value

# I, U, D; K: a delete carrying the key only (under REPLICA IDENTITY DEFAULT), or the old key of an update that
# changed it, whose other columns are filled; T: a TRUNCATE (no values)
Operation = Literal["I", "U", "D", "K", "T"]

# a spool writes its buffer to a part once it holds this many changes, or about this many bytes of messages
SPILL_CHANGES = 10_000
SPILL_BYTES = 16 << 20

# a part's columns before the declared ones; `POSITION` is added by `Spool.relation`: the change's place in the
# spool, 0 for the first, one more for each next
OPERATION, COMMITTED_AT, LSN, FILLED = "_spool_operation", "_spool_committed_at", "_spool_lsn", "_spool_filled"
POSITION = "_spool_position"


@dataclass
class Spool:
    table: Table
    folder: Path
    parts: list[Path] = field(default_factory=list)
    # the changes each part holds
    part_rows: list[int] = field(default_factory=list)
    # the buffer: each change's operation and values (in the relation's column order; None for a TRUNCATE)
    operations: list[Operation] = field(default_factory=list)
    values: list[tuple[Value, ...] | None] = field(default_factory=list)
    # the buffer's transactions: the index of each one's first change, its commit time and LSN
    transactions: list[tuple[int, datetime, int]] = field(default_factory=list)
    buffered_bytes: int = 0
    count: int = 0
    # whether a TRUNCATE is among the changes: the publish then reads the table's whole stored state
    truncated: bool = False
    # the relation's position of each declared column (-1: the relation lacks it), from its latest description
    columns: list[int] = field(default_factory=list)
    # the declared columns a key-only change fills (every one but the relation's key columns), as a bit mask
    key_only_fills: int = 0
    # the declared columns the relation holds as `real` (float4): their text is a single-precision value, which the
    # publish widens to a double through float4 as the snapshot reader's COPY does (0.1 -> 0.10000000149011612)
    single_precision: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.columns:
            self.columns = [-1] * len(self.table.columns)
            self.key_only_fills = (1 << len(self.table.columns)) - 1

    def describe(self, columns: list[int], key_columns: set[int], single_precision: frozenset[str]) -> None:
        """A new description of the relation: the buffer, in the old column order, is spilled first."""
        self.spill()
        self.columns = list(columns)
        self.single_precision = single_precision
        self.key_only_fills = sum(1 << i for i, p in enumerate(columns) if p not in key_columns)

    def add(
        self, operation: Operation, committed_at: datetime, lsn: int, values: tuple[Value, ...] | None, size: int
    ) -> None:
        """One change of the transaction committing at `lsn`; `size` is about its bytes (its message's)."""
        if not self.transactions or self.transactions[-1][2] != lsn:
            self.transactions.append((len(self.operations), committed_at, lsn))
        self.operations.append(operation)
        self.values.append(values)
        self.count += 1
        self.buffered_bytes += size
        if values is None:
            self.truncated = True
        if len(self.operations) >= SPILL_CHANGES or self.buffered_bytes >= SPILL_BYTES:
            self.spill()

    def spill(self) -> None:
        """Write the buffer to a new part."""
        if not self.operations:
            return
        operations, rows, count = self.operations, self.values, len(self.operations)
        # a TRUNCATE's row: NULLs as wide as the relation's rows
        width = max((len(r) for r in rows if r is not None), default=max(self.columns) + 1)
        blank = (None,) * width
        by_position = list(zip(*(blank if r is None else r for r in rows), strict=True)) if width else []
        filled = [0] * count
        if "K" in operations:
            for index, operation in enumerate(operations):
                if operation == "K":
                    filled[index] = self.key_only_fills
        arrays = []
        for bit, position in enumerate(self.columns):
            column: tuple[Value, ...] | list[Value] = by_position[position] if position >= 0 else (None,) * count
            if UNCHANGED in column:
                # an unchanged TOASTed value: pgoutput did not resend it, the key's last row has it
                for index, value in enumerate(column):
                    if value is UNCHANGED:
                        filled[index] |= 1 << bit
                column = [None if v is UNCHANGED else v for v in column]
            arrays.append(pa.array(column, pa.string()))
        # each transaction's commit time and LSN, repeated over its changes
        bounds = [start for start, _, _ in self.transactions[1:]] + [count]
        runs = list(zip(self.transactions, bounds, strict=True))
        moment_type = pa.timestamp("us", tz="UTC")
        head = [
            pa.array(["D" if o == "K" else o for o in operations] if "K" in operations else operations, pa.string()),
            pa.concat_arrays([pa.repeat(pa.scalar(m, moment_type), end - start) for (start, m, _), end in runs]),
            pa.concat_arrays([pa.repeat(pa.scalar(lsn, pa.int64()), end - start) for (start, _, lsn), end in runs]),
            pa.array(filled, pa.int64()),
        ]
        self.folder.mkdir(parents=True, exist_ok=True)
        part = self.folder / f"part-{uuid.uuid4().hex}.parquet"
        # a part lives a few seconds on the local disk and is read once, whole: written as fast as can be (no
        # compression, dictionaries or statistics, which cost as much as the decoding of its changes)
        table = pa.Table.from_arrays(head + arrays, schema=self._schema())
        pq.write_table(table, part, compression="none", use_dictionary=False, write_statistics=False)
        self.parts.append(part)
        self.part_rows.append(count)
        self.operations, self.values, self.transactions, self.buffered_bytes = [], [], [], 0

    def extend(self, other: Spool) -> None:
        """Take every change of `other` after this spool's own (its parts are moved, not copied); `other` is left
        empty."""
        if other.parts:
            self.spill()
            self.parts.extend(other.parts)
            self.part_rows.extend(other.part_rows)
        offset = len(self.operations)
        self.transactions += [(offset + start, moment, lsn) for start, moment, lsn in other.transactions]
        self.operations += other.operations
        self.values += other.values
        self.buffered_bytes += other.buffered_bytes
        self.count += other.count
        self.truncated = self.truncated or other.truncated
        other.parts, other.part_rows = [], []
        other.clear()
        if len(self.operations) >= SPILL_CHANGES or self.buffered_bytes >= SPILL_BYTES:
            self.spill()

    def clear(self) -> None:
        """Drop every change (after a publish, or a transaction the lake already holds)."""
        for part in self.parts:
            part.unlink(missing_ok=True)
        self.parts, self.part_rows, self.operations, self.values, self.transactions = [], [], [], [], []
        self.buffered_bytes, self.count, self.truncated = 0, 0, False

    def relation(self) -> str:
        """Every change as SQL for DuckDB, once spilled: `POSITION` and the part's columns, in the spool's order
        (on a connection that keeps the order of what it reads)."""
        self.spill()
        assert self.parts, "an empty spool is not read"
        offsets, start = [], 0
        for rows in self.part_rows:
            offsets.append(start)
            start += rows
        files = ", ".join(sql_literal(str(p)) for p in self.parts)
        columns = ", ".join(quote_identifier(n) for n in self._schema().names)
        return (
            f"(select cast([{', '.join(map(str, offsets))}][cast(file_index as bigint) + 1] + file_row_number "
            f"as bigint) as {POSITION}, {columns} from read_parquet([{files}], file_row_number = true))"
        )

    def _schema(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field(OPERATION, pa.string()),
                pa.field(COMMITTED_AT, pa.timestamp("us", tz="UTC")),
                pa.field(LSN, pa.int64()),
                pa.field(FILLED, pa.int64()),
                *(pa.field(c.name, pa.string()) for c in self.table.columns),
            ]
        )
