"""Snapshot mode from Postgres: each declared table read whole, all of one run's tables in one transaction.

The run's first read opens one REPEATABLE READ, READ ONLY transaction and every table of the run is read in it, so
the run is a consistent cut across tables: a transaction that commits between two tables' reads is in neither or
both. A table is streamed out by `COPY (SELECT ...) TO STDOUT` in CSV into a file of the run's work folder, block
by block, and DuckDB reads that file into Parquet with the declared types: no row becomes a Python object, and
memory stays within DuckDB's limit whatever the table's size. Every non-NULL value is quoted (`FORCE_QUOTE *`), so
an empty text and NULL stay apart. The row count COPY reports is checked against the Parquet file's, and the
declared key is checked for NULLs (the database need not have a primary key: the key is the declaration's).

The transaction stays open until the reader is closed or collected; a run holds it for its reads and diffs.
"""

from __future__ import annotations

import logging
import time
import weakref
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from ingestion.catalog import DatabaseMode, Table
from ingestion.duck import check_io, connect, copy_to_parquet, quote_identifier, sql_literal
from ingestion.errors import SnapshotError, UsageError
from ingestion.postgres.connection import connect as connect_postgres
from ingestion.postgres.connection import endpoint_of, redact
from ingestion.postgres.errors import NullKeyError, PostgresAccessError
from ingestion.postgres.schema import DatabaseColumn, relation_name, relation_of, resolve_columns
from ingestion.readers.base import CaptureContext, Snapshot

log = logging.getLogger(__name__)

# Text forms DuckDB parses as the declared types: ISO dates, UTC times, floats that read back to the same double.
_SESSION = (
    "set timezone = 'UTC'",
    "set datestyle = 'ISO, YMD'",
    "set extra_float_digits = 1",
)


class PostgresReader:
    """Reads each declared table from its relation (`meta.database_table`, else `public.<table>`)."""

    name = "postgres"
    simulated_days = False

    def __init__(self, dsn: str, mode: DatabaseMode | None = None, snapshot: str | None = None) -> None:
        self.dsn = dsn
        # --mode: this run's mode for every table, over their declarations
        self.mode = mode
        # log mode's initial load: the snapshot a new replication slot exported, read instead of a fresh one
        self.snapshot = snapshot
        self.endpoint = endpoint_of(dsn)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._close: weakref.finalize[..., PostgresReader] | None = None

    def available_tables(self, tables: list[Table]) -> list[Table]:
        # every declared table must be in the database: `read` names one that is not, with its place there
        return list(tables)

    def read(self, table: Table, context: CaptureContext) -> Snapshot:
        mode = self.mode or table.database_mode
        if mode != "snapshot":
            raise UsageError(
                f"table {table.qualified_name}: capture mode {mode} is not available yet; capture it with "
                "--mode snapshot"
            )
        started = time.monotonic()
        conn = self._transaction()
        relation = relation_name(table)
        csv_path = context.workdir / f"{table.name}.csv"
        try:
            columns = resolve_columns(conn, table)
            rows = _copy_out(conn, table, columns, csv_path)
        except psycopg.Error as exc:
            reason = " ".join(redact(str(exc), self.dsn).split())
            raise PostgresAccessError(str(self.endpoint), f"reading {relation} failed: {reason}") from None
        dest = context.workdir / f"{table.name}.parquet"
        try:
            written = _to_parquet(table, csv_path, dest)
        finally:
            csv_path.unlink(missing_ok=True)
        if written != rows:
            raise SnapshotError(
                f"table {table.qualified_name}: COPY of {relation} sent {rows} rows but {written} were read; "
                "nothing was published"
            )
        _check_key(table, dest)
        log.info(
            "%s: %d rows from %s (%s) in %.1f s",
            table.qualified_name,
            rows,
            relation,
            self.endpoint,
            time.monotonic() - started,
        )
        return Snapshot(f"read_parquet({sql_literal(str(dest))})", lambda: rows, file=dest)

    def close(self) -> None:
        """End the run's transaction (read only: nothing to commit) and its connection."""
        if self._close is not None:
            self._close()
        self._conn = None
        self._close = None

    def _transaction(self) -> psycopg.Connection[tuple[object, ...]]:
        """The run's connection, in the one transaction every table of the run is read in."""
        if self._conn is None:
            conn = connect_postgres(self.dsn)
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            for statement in _SESSION:
                conn.execute(statement)
            if self.snapshot is not None:
                conn.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(self.snapshot)))
            self._conn = conn
            self._close = weakref.finalize(self, conn.close)
        return self._conn


def _value(column: DatabaseColumn, data_type: str) -> sql.Composable:
    """A column as the text DuckDB casts to the declared type."""
    name = sql.Identifier(column.name)
    declared = data_type.strip().lower()
    if declared in ("varchar", "boolean"):
        return sql.SQL("{}::text").format(name)  # booleans as true/false rather than COPY's t/f
    if column.type_name == "timestamptz":
        return sql.SQL("({} at time zone 'UTC')").format(name)
    if column.type_name == "float4":
        return sql.SQL("{}::float8").format(name)
    return name


def _copy_out(
    conn: psycopg.Connection[tuple[object, ...]], table: Table, columns: list[DatabaseColumn], dest: Path
) -> int:
    """Stream the table as CSV into `dest`; returns the rows COPY sent."""
    schema, name = relation_of(table)
    values = sql.SQL(", ").join(_value(c, d.data_type) for c, d in zip(columns, table.columns, strict=True))
    query = sql.SQL("copy (select {} from {}.{}) to stdout (format csv, force_quote *)").format(
        values, sql.Identifier(schema), sql.Identifier(name)
    )
    with conn.cursor() as cursor, dest.open("wb") as out:
        with cursor.copy(query) as copy:
            for block in copy:
                out.write(block)
        return cursor.rowcount


def _to_parquet(table: Table, csv_path: Path, dest: Path) -> int:
    """The CSV of COPY as Parquet with the declared types; returns the rows written."""
    names = {c.name: "VARCHAR" for c in table.columns}
    spec = "{" + ", ".join(f"{sql_literal(n)}: {sql_literal(t)}" for n, t in names.items()) + "}"
    source = (
        f"read_csv({sql_literal(str(csv_path))}, columns = {spec}, header = false, delim = ',', quote = '\"', "
        "escape = '\"', allow_quoted_nulls = false, auto_detect = false, strict_mode = true, "
        "max_line_size = 1073741824)"
    )
    casts = ", ".join(
        f"cast({quote_identifier(c.name)} as {c.data_type}) as {quote_identifier(c.name)}" for c in table.columns
    )
    con = connect(dest.parent, ordered=True)
    try:
        return copy_to_parquet(con, f"select {casts} from {source}", dest)
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        raise SnapshotError(
            f"table {table.qualified_name}: a value of {relation_name(table)} is not of its declared type: "
            f"{str(exc).splitlines()[0]}; nothing was published"
        ) from None
    finally:
        con.close()


def _check_key(table: Table, path: Path) -> None:
    """Refuse a NULL in any declared key column, naming the column."""
    counts = ", ".join(f"count(*) filter (where {quote_identifier(k)} is null)" for k in table.primary_key)
    con = connect(path.parent)
    try:
        found = con.execute(f"select {counts} from read_parquet({sql_literal(str(path))})").fetchone()
    finally:
        con.close()
    for column, nulls in zip(table.primary_key, found or (), strict=False):
        if int(nulls):
            raise NullKeyError(table.qualified_name, relation_name(table), column, int(nulls))
