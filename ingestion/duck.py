"""DuckDB connections and SQL quoting shared by the readers and the CDC diff."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import duckdb

from ingestion.config import DEFAULT_DUCKDB_MEMORY_LIMIT
from ingestion.errors import WorkspaceError
from ingestion.lake import lake_read_failure


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(
    context_dir: Path, *, ordered: bool = True, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to `context_dir` and stays within `memory_limit` (a run's is env
    LAGO_DUCKDB_MEMORY_LIMIT, from `ingestion.config`)."""
    spill = context_dir / ".duckdb_spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        ":memory:",
        config={
            "memory_limit": memory_limit,
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
        raise WorkspaceError(where, str(exc).splitlines()[0]) from exc


def check_lake(exc: duckdb.Error, filesystem: Any | None) -> None:
    """Raise the lake's own error (exit 4, naming the object and the S3 error code) when DuckDB failed because a
    read of the lake's files through `filesystem` failed: not a bad snapshot, and not a traceback's first line."""
    failure = lake_read_failure(filesystem)
    if failure is not None:
        raise failure from exc


def copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, dest: Path, order_by: str | None = None) -> int:
    """Write `query` to a snappy Parquet file by DuckDB's own COPY (no row passes through Python); returns rows.

    The query casts every column to its declared type, so each file of a table has the same Parquet schema. DuckDB
    marks a column REQUIRED when its statistics say it holds no NULL (a literal, a REQUIRED source column), so two
    files of one table could differ; each column goes through a CASE that may yield NULL, which keeps it OPTIONAL.
    """
    names = [quote_identifier(name) for name in relation_columns(con, f"({query})")]
    optional = ", ".join(f"case when {n} is null then null else {n} end as {n}" for n in names)
    ordered = f" order by {order_by}" if order_by else ""
    row = con.execute(
        f"copy (select {optional} from ({query}){ordered}) to {sql_literal(str(dest))} "
        "(format parquet, compression snappy)"
    ).fetchone()
    return int(row[0]) if row else 0


def relation_columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """A relation's columns and their DuckDB types, in order, from its plan alone (no row is read)."""
    description = con.execute(f"select * from {relation} limit 0").description or []
    return {str(column[0]): str(column[1]) for column in description}


def parquet_columns(con: duckdb.DuckDBPyConnection, path: Path | str) -> dict[str, str]:
    """A Parquet file's columns and their DuckDB types, from its footer."""
    return relation_columns(con, f"read_parquet({sql_literal(str(path))})")


def same_type(found: str, declared: str) -> bool:
    """Whether DuckDB's name of a column's type is the declared one (`DECIMAL(18,2)` is `decimal(18, 2)`)."""
    return found.replace(" ", "").lower() == declared.replace(" ", "").lower()
