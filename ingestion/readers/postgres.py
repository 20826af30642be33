"""Postgres as a snapshot reader: each declared table read whole (snapshot mode) or through its cursor's window
(cursor mode: the rows at or after the table's mark, see `ingestion.postgres.cursor`), all of one run's tables in
one transaction.

The run's first read opens one REPEATABLE READ, READ ONLY transaction and every table of the run is read in it, so
the run is a consistent cut across tables: a transaction that commits between two tables' reads is in neither or
both. A table is streamed out by `COPY (SELECT ...) TO STDOUT` in CSV into a file of the run's work folder, block
by block, and DuckDB reads that file into Parquet with the declared types: no row becomes a Python object, and
memory stays within DuckDB's limit whatever the table's size. Every non-NULL value is quoted (`FORCE_QUOTE *`), so
an empty text and NULL stay apart. The row count COPY reports is checked against the Parquet file's, and the
declared key is checked for NULLs (the database need not have a primary key: the key is the declaration's).

The cut is named in each capture's record (`CaptureRecord.cut`): the cluster's system identifier, the database's
oid and the transaction's snapshot (`pg_current_snapshot()`, whose transaction ids never wrap), so two captures
with equal cuts saw one state of the database, in one run or in two runs between which nothing was committed. A
cursor read without a key scan names none: the deletes it has not looked for yet are not in the lake's state.

The transaction stays open until the reader is closed or collected; a run holds it for its reads and diffs. A
cursor read is a partial snapshot: the engine applies it to the lake's stored state by key, and drops the keys a
key scan (the key columns of every row, read in the same transaction) no longer finds.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from ingestion.catalog import DatabaseMode, Table
from ingestion.duck import check_io, connect, copy_to_parquet, quote_identifier, sql_literal
from ingestion.errors import UsageError
from ingestion.postgres.connection import connect as connect_postgres
from ingestion.postgres.connection import endpoint_of, redact
from ingestion.postgres.cursor import Candidate, CursorState, highest, horizon
from ingestion.postgres.errors import (
    CopyCountError,
    CursorColumnError,
    DatabaseValueError,
    NullKeyError,
    PostgresAccessError,
)
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
        # noted before the run's snapshot (see `ingestion.postgres.cursor`)
        self._candidates: dict[str, Candidate | None] = {}
        self._horizon: datetime | None = None
        # the run's snapshot, named once its transaction has taken it
        self._cut: str | None = None

    def available_tables(self, tables: list[Table]) -> list[Table]:
        # every declared table must be in the database: `read` names one that is not, with its place there
        return list(tables)

    def mode_of(self, table: Table) -> DatabaseMode:
        """This run's mode for `table`: `--mode`, else its declaration."""
        return self.mode or table.database_mode

    def read(self, table: Table, context: CaptureContext) -> Snapshot:
        mode = self.mode_of(table)
        if mode == "log":
            # the run service captures log tables from the write-ahead log (`ingestion.log_capture`)
            raise UsageError(f"table {table.qualified_name} is captured in log mode: it is not read as a snapshot")
        if mode == "cursor" and table.cursor_column is None:
            raise CursorColumnError(table.qualified_name)
        started = time.monotonic()
        conn = self._transaction(context.run_tables or (table,))
        relation = relation_name(table)
        window: CursorState | None = None
        if mode == "cursor":
            kept = CursorState.from_json(context.previous, table) if context.previous is not None else None
            window = kept or CursorState(str(table.cursor_column), None)
        partial = window is not None and window.mark is not None
        scan = window is not None and partial and window.since_key_scan + 1 >= table.cursor_key_scan
        csv_path = context.workdir / f"{table.name}.csv"
        keys_csv = context.workdir / f"{table.name}_keys.csv"
        try:
            columns = resolve_columns(conn, table)
            where = _window(table, columns, window.mark) if window is not None and window.mark is not None else None
            rows = _copy_out(conn, table, columns, csv_path, where)
            if scan:
                key_columns = [columns[table.column_names.index(k)] for k in table.primary_key]
                key_rows = _copy_out(conn, _keys_of(table), key_columns, keys_csv)
        except psycopg.Error as exc:
            reason = " ".join(redact(str(exc), self.dsn).split())
            raise PostgresAccessError(str(self.endpoint), f"reading {relation} failed: {reason}") from None
        dest = context.workdir / f"{table.name}.parquet"
        try:
            written = _to_parquet(table, csv_path, dest)
        finally:
            csv_path.unlink(missing_ok=True)
        if written != rows:
            raise CopyCountError(table.qualified_name, relation, rows, written)
        _check_key(table, dest)
        keys: str | None = None
        if scan:
            keys_file = context.workdir / f"{table.name}_keys.parquet"
            try:
                scanned = _to_parquet(_keys_of(table), keys_csv, keys_file)
            finally:
                keys_csv.unlink(missing_ok=True)
            if scanned != key_rows:
                raise CopyCountError(table.qualified_name, relation, key_rows, scanned, keys=True)
            _check_key(table, keys_file)
            keys = f"read_parquet({sql_literal(str(keys_file))})"
        log.info(
            "%s: %d rows from %s (%s)%s in %.1f s",
            table.qualified_name,
            rows,
            relation,
            self.endpoint,
            _describe(window, table, scan),
            time.monotonic() - started,
        )
        relation_sql = f"read_parquet({sql_literal(str(dest))})"
        # a window read without a key scan may miss deletes: the table's state is then no state of the cut
        cut = self._cut if scan or not partial else None
        if table.cursor_column is None:
            return Snapshot(relation_sql, lambda: rows, file=dest, cut=cut)
        if window is None:
            # a table read whole that has a cursor starts a window from this read: a later cursor capture reads
            # only what moved since (and a window the capture state no longer reads right is replaced)
            window = CursorState(table.cursor_column, None)
        state = window.advance(
            self._candidates.get(table.qualified_name),
            self._horizon,
            table.cursor_lag,
            scanned=scan or not partial,
        )
        return Snapshot(
            relation_sql,
            lambda: rows,
            file=None if partial else dest,
            partial=partial,
            keys=keys,
            reader_state=state.to_json(),
            cut=cut,
        )

    def close(self) -> None:
        """End the run's transaction (read only: nothing to commit) and its connection."""
        if self._close is not None:
            self._close()
        self._conn = None
        self._close = None

    def _transaction(self, tables: tuple[Table, ...]) -> psycopg.Connection[tuple[object, ...]]:
        """The run's connection, in the one transaction every table of the run is read in. Before it starts, each
        cursor table's candidate mark and the database's horizon are noted (see `ingestion.postgres.cursor`)."""
        if self._conn is None:
            conn = connect_postgres(self.dsn)
            self._close = weakref.finalize(self, conn.close)
            conn.autocommit = True
            for statement in _SESSION:
                conn.execute(statement)
            # every table with a cursor, in cursor or snapshot mode: a whole read starts a window too
            cursors = [t for t in tables if self.mode_of(t) != "log" and t.cursor_column is not None]
            try:
                for table in cursors:
                    columns = resolve_columns(conn, table)
                    column = columns[table.column_names.index(str(table.cursor_column))]
                    self._candidates[table.qualified_name] = highest(conn, table, column)
                if cursors:
                    self._horizon = horizon(conn, str(self.endpoint.database))
            except psycopg.Error as exc:
                reason = " ".join(redact(str(exc), self.dsn).split())
                raise PostgresAccessError(str(self.endpoint), f"reading the cursor columns failed: {reason}") from None
            conn.autocommit = False
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            if self.snapshot is not None:
                conn.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(self.snapshot)))
            try:
                # the transaction's first query takes its snapshot (or reads the one just set): the run's cut
                self._cut = _cut_of(conn)
            except psycopg.Error as exc:
                reason = " ".join(redact(str(exc), self.dsn).split())
                raise PostgresAccessError(str(self.endpoint), f"taking the run's snapshot failed: {reason}") from None
            self._conn = conn
        return self._conn


_CUT = """
select 'postgres:' || (select system_identifier from pg_control_system())
    || '/' || (select oid from pg_database where datname = current_database())
    || '/' || pg_current_snapshot()::text
"""


def _cut_of(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    """The name of the transaction's snapshot, unique to its cluster and database (`postgres:<system id>/<database
    oid>/<xmin>:<xmax>:<running xids>`)."""
    row = conn.execute(_CUT).fetchone()
    assert row is not None
    return str(row[0])


def _window(table: Table, columns: list[DatabaseColumn], mark: str) -> sql.Composable:
    """The rows a cursor capture reads: at or after the mark, and every row whose cursor is NULL."""
    column = columns[table.column_names.index(str(table.cursor_column))]
    name = sql.Identifier(column.name)
    return sql.SQL("{} >= cast({} as {}) or {} is null").format(name, sql.Literal(mark), sql.SQL(column.shown), name)


def _keys_of(table: Table) -> Table:
    """The table as its key columns alone: what a key scan reads."""
    return replace(table, columns=tuple(table.column(k) for k in table.primary_key))


def _describe(window: CursorState | None, table: Table, scan: bool) -> str:
    if window is None:
        return ""
    if window.mark is None:
        return f", cursor {table.cursor_column}: whole table (no window yet)"
    return f", cursor {table.cursor_column} >= {window.mark}" + (" and every key" if scan else "")


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
    conn: psycopg.Connection[tuple[object, ...]],
    table: Table,
    columns: list[DatabaseColumn],
    dest: Path,
    where: sql.Composable | None = None,
) -> int:
    """Stream the table's rows (those matching `where`) as CSV into `dest`; returns the rows COPY sent."""
    schema, name = relation_of(table)
    values = sql.SQL(", ").join(_value(c, d.data_type) for c, d in zip(columns, table.columns, strict=True))
    condition = sql.SQL(" where {}").format(where) if where is not None else sql.SQL("")
    query = sql.SQL("copy (select {} from {}.{}{}) to stdout (format csv, force_quote *)").format(
        values, sql.Identifier(schema), sql.Identifier(name), condition
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
        raise DatabaseValueError(table.qualified_name, relation_name(table), str(exc).splitlines()[0]) from None
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
