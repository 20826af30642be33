"""Change data capture by snapshot diff, vectorised in DuckDB.

Two Parquet snapshots of a table go in; one Parquet file of changes comes out, each row tagged with
`_cdc_operation` (I/U/D), `_cdc_timestamp` (the capture's time) and `_cdc_sequence` (strictly increasing per
table). Rows are compared column by column with IS DISTINCT FROM, so NULL in both snapshots is no change.
Neither snapshot is ever loaded into Python objects: DuckDB streams and, past its memory budget, spills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.catalog import CDC_OPERATION, CDC_SEQUENCE, CDC_TIMESTAMP, Table
from ingestion.duck import check_io, connect, quote_identifier, sql_literal, write_parquet
from ingestion.errors import SnapshotError


@dataclass(frozen=True)
class ChangeCounts:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes


@dataclass(frozen=True)
class DiffResult:
    counts: ChangeCounts
    snapshot_rows: int
    last_sequence: int


def change_schema(table: Table) -> pa.Schema:
    """The Arrow schema of every full-load and change file of `table`."""
    cdc_fields = [
        pa.field(CDC_OPERATION, pa.string()),
        pa.field(CDC_TIMESTAMP, pa.timestamp("us", tz="UTC")),
        pa.field(CDC_SEQUENCE, pa.int64()),
    ]
    return pa.schema(cdc_fields + list(table.schema))


def _read(path: Path) -> str:
    return f"read_parquet({sql_literal(str(path))})"


def check_keys(con: duckdb.DuckDBPyConnection, table: Table, snapshot: Path) -> int:
    """Raise if a key column is NULL or a key repeats; return the snapshot's row count."""
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    key_label = ", ".join(table.primary_key)
    null_test = " or ".join(f"{quote_identifier(k)} is null" for k in table.primary_key)
    distinct_key = quote_identifier(table.primary_key[0]) if len(table.primary_key) == 1 else f"({keys})"
    # one scan answers both questions; the slower search for examples runs only when a key repeats
    row = con.execute(
        f"select count(*), count(*) filter (where {null_test}), "
        f"count(distinct {distinct_key}) filter (where not ({null_test})) from {_read(snapshot)}"
    ).fetchall()[0]
    rows, null_keys, distinct_keys = int(row[0]), int(row[1]), int(row[2])
    if null_keys:
        raise SnapshotError(
            f"table {table.qualified_name}: {null_keys} row(s) have a NULL in primary key ({key_label}); "
            "nothing was published"
        )
    if distinct_keys == rows:
        return rows
    duplicates = con.execute(
        f"select {keys}, count(*) as n from {_read(snapshot)} group by all having count(*) > 1 "
        f"order by n desc, {keys} limit 5"
    ).fetchall()
    if duplicates:
        total = con.execute(
            f"select count(*) from (select 1 from {_read(snapshot)} group by {keys} having count(*) > 1)"
        ).fetchall()[0]
        examples = "; ".join(
            ", ".join(f"{k}={v!r}" for k, v in zip(table.primary_key, dup[:-1], strict=True)) + f" ({dup[-1]} rows)"
            for dup in duplicates
        )
        raise SnapshotError(
            f"table {table.qualified_name}: {total[0]} primary key value(s) of ({key_label}) "
            f"repeat, e.g. {examples}; nothing was published"
        )
    return rows


def _declared_view(table: Table, snapshot: Path) -> str:
    """The previous snapshot seen through today's declaration: a newly declared column reads as NULL (so every
    row with a value in it is an update) and a column no longer declared is left out."""
    present = set(pq.read_schema(snapshot).names)
    columns = ", ".join(
        quote_identifier(c.name) if c.name in present else f"cast(null as {c.data_type}) as {quote_identifier(c.name)}"
        for c in table.columns
    )
    return f"select {columns} from {_read(snapshot)}"


def _select_columns(table: Table, alias: str) -> str:
    return ", ".join(
        f"cast({alias}.{quote_identifier(c.name)} as {c.data_type}) as {quote_identifier(c.name)}"
        for c in table.columns
    )


def _write_changes(
    con: duckdb.DuckDBPyConnection,
    changes_sql: str,
    table: Table,
    captured_at: datetime,
    first_sequence: int,
    dest: Path,
) -> ChangeCounts:
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    columns = ", ".join(quote_identifier(c) for c in table.column_names)
    timestamp = sql_literal(captured_at.strftime("%Y-%m-%d %H:%M:%S.%f+00"))
    write_parquet(
        con,
        f"""select
                op as {CDC_OPERATION},
                cast({timestamp} as timestamptz) as {CDC_TIMESTAMP},
                cast({first_sequence} + row_number() over (order by {keys}) - 1 as bigint) as {CDC_SEQUENCE},
                {columns}
            from ({changes_sql}) as changes
            order by {CDC_SEQUENCE}""",
        change_schema(table),
        dest,
    )
    counted = dict(con.execute(f"select {CDC_OPERATION}, count(*) from {_read(dest)} group by all").fetchall())
    return ChangeCounts(counted.get("I", 0), counted.get("U", 0), counted.get("D", 0))


def full_load(table: Table, snapshot: Path, captured_at: datetime, first_sequence: int, dest: Path) -> DiffResult:
    """Every row of the first snapshot as an insert."""
    con = connect(dest.parent, ordered=False)
    try:
        rows = check_keys(con, table, snapshot)
        counts = _write_changes(
            con,
            f"select 'I' as op, {_select_columns(table, 'n')} from {_read(snapshot)} as n",
            table,
            captured_at,
            first_sequence,
            dest,
        )
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        raise SnapshotError(f"table {table.qualified_name}: full load failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
    return DiffResult(counts, rows, first_sequence + counts.total - 1)


def diff(
    table: Table,
    previous: Path,
    current: Path,
    captured_at: datetime,
    first_sequence: int,
    dest: Path,
) -> DiffResult:
    """The changes that turn `previous` into `current`. Writes `dest` only when there is a change."""
    con = connect(dest.parent, ordered=False)
    try:
        rows = check_keys(con, table, current)
        join = " and ".join(f"o.{quote_identifier(k)} = n.{quote_identifier(k)}" for k in table.primary_key)
        first_key = quote_identifier(table.primary_key[0])
        non_keys = [c for c in table.column_names if c not in table.primary_key]
        changed = (
            " or ".join(f"o.{quote_identifier(c)} is distinct from n.{quote_identifier(c)}" for c in non_keys)
            or "false"
        )
        payload = ", ".join(
            f"cast(case when n.{first_key} is null then o.{quote_identifier(c.name)} "
            f"else n.{quote_identifier(c.name)} end as {c.data_type}) as {quote_identifier(c.name)}"
            for c in table.columns
        )
        changes_sql = f"""
            select
                case when o.{first_key} is null then 'I' when n.{first_key} is null then 'D' else 'U' end as op,
                {payload}
            from {_read(current)} as n
            full outer join ({_declared_view(table, previous)}) as o on {join}
            where o.{first_key} is null or n.{first_key} is null or ({changed})
        """
        dest.unlink(missing_ok=True)
        counts = _write_changes(con, changes_sql, table, captured_at, first_sequence, dest)
        if counts.total == 0:
            dest.unlink(missing_ok=True)
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        raise SnapshotError(f"table {table.qualified_name}: diff failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
    return DiffResult(counts, rows, first_sequence + counts.total - 1)
