"""DuckDB connections and SQL quoting shared by the readers and the CDC diff."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.errors import WorkspaceError


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(context_dir: Path, *, ordered: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to `context_dir` and stays within a bounded memory budget."""
    spill = context_dir / ".duckdb_spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        ":memory:",
        config={
            "memory_limit": os.environ.get("LAGO_DUCKDB_MEMORY_LIMIT", "3GB"),
            "temp_directory": str(spill),
            "preserve_insertion_order": ordered,
        },
    )
    con.execute("set timezone = 'UTC'")
    # DuckDB's own progress bar for the long scans and joins of large tables, only on a terminal
    con.execute(f"set enable_progress_bar = {'true' if sys.stderr.isatty() else 'false'}")
    return con


def check_io(exc: duckdb.Error, where: str) -> None:
    """Raise a WorkspaceError for DuckDB's failures to read or write its local files (a full or read-only
    TMPDIR), which are not a bad snapshot."""
    if isinstance(exc, duckdb.IOException | duckdb.OutOfMemoryException):
        raise WorkspaceError(f"{where}: the local work folder failed: {str(exc).splitlines()[0]}") from exc


def write_parquet(con: duckdb.DuckDBPyConnection, query: str, schema: pa.Schema, dest: Path) -> int:
    """Stream `query` into a snappy Parquet file with exactly `schema` (every column nullable); returns rows.

    DuckDB's own COPY marks a column without NULLs as required, so two captures of one table could differ in
    their Parquet schemas; writing through Arrow with the declared schema keeps every file identical in shape.
    """
    rows = 0
    reader = con.sql(query).to_arrow_reader(1_000_000)
    with pq.ParquetWriter(dest, schema, compression="snappy") as writer:
        for batch in reader:
            writer.write_batch(batch.cast(schema))
            rows += batch.num_rows
    return rows
