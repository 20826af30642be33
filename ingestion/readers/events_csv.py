"""A folder of `<table>.csv` event files: history exports, or a log the user appends to.

Each run reads the whole file; the events run drops rows it published before (`skip_published`), so appending
to the files and running again publishes only the new lines. The arrival time is the run's time, or, to load
history, a declared column (`--arrival-column transaction_datetime`, read as UTC).
"""

from __future__ import annotations

from pathlib import Path

from ingestion.catalog import EVENT_INGESTED_AT, Table
from ingestion.duck import connect, quote_identifier, sql_literal
from ingestion.errors import ArrivalColumnError, InputNotFoundError
from ingestion.readers.base import EventContext
from ingestion.readers.csv import csv_to_parquet


class EventCsvFolderReader:
    """Reads `<folder>/<table>.csv` for each table, with the same checks as the snapshot CSV reader."""

    name = "csv"
    simulated_days = False
    skip_published = True

    def __init__(self, folder: Path, arrival_column: str | None = None) -> None:
        if not folder.is_dir():
            raise InputNotFoundError("CSV folder", str(folder), "does not exist")
        self.folder = folder
        self.arrival_column = arrival_column

    def available_tables(self, tables: list[Table]) -> list[Table]:
        return [t for t in tables if (self.folder / f"{t.name}.csv").is_file()]

    def read(self, table: Table, context: EventContext) -> Path:
        if self.arrival_column is not None:
            column = next((c for c in table.columns if c.name == self.arrival_column), None)
            if column is None or column.data_type not in ("timestamp", "date"):
                raise ArrivalColumnError(self.arrival_column, table.qualified_name, tuple(table.column_names))
            arrival = f"cast({quote_identifier(self.arrival_column)} as timestamptz)"
        else:
            arrival = f"cast({sql_literal(context.arrived_at.isoformat())} as timestamptz)"

        csv_path = self.folder / f"{table.name}.csv"
        typed = context.workdir / f"{table.name}.typed.parquet"
        dest = context.workdir / f"{table.name}.parquet"
        con = connect(context.workdir, memory_limit=context.duckdb_memory_limit)
        try:
            if _has_rows(csv_path):
                csv_to_parquet(table, csv_path, typed, context.duckdb_memory_limit)
                relation = f"read_parquet({sql_literal(str(typed))})"
            else:
                # a header alone (or an empty file) is a table without events yet
                empty = ", ".join(f"cast(null as {c.data_type}) as {quote_identifier(c.name)}" for c in table.columns)
                relation = f"(select {empty} where false)"
            con.execute(
                f"copy (select {arrival} as {EVENT_INGESTED_AT}, * from {relation}) "
                f"to {sql_literal(str(dest))} (format parquet, compression snappy)"
            )
        finally:
            con.close()
        typed.unlink(missing_ok=True)
        return dest


def _has_rows(path: Path) -> bool:
    if not path.is_file():
        raise InputNotFoundError("events file", str(path), "not found")
    with path.open("rb") as handle:
        lines = (line for line in handle if line.strip())
        return next(lines, None) is not None and next(lines, None) is not None
