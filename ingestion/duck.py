"""DuckDB connections and SQL quoting shared by the readers and the CDC diff."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb


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
