"""Change data capture by snapshot diff, vectorised in DuckDB.

Two Parquet snapshots of a table go in; one Parquet file of changes comes out, each row tagged with
`_cdc_operation` (I/U/D), `_cdc_timestamp` (the capture's time) and `_cdc_sequence` (strictly increasing per
table). Rows are compared column by column with IS DISTINCT FROM, so NULL in both snapshots is no change.
Neither snapshot is ever loaded into Python objects: DuckDB streams, writes the change file with its own COPY
and, past its memory budget, spills.

The key check costs no scan of its own on a diff. The previous snapshot's keys are unique (it passed this check
when it was captured), so every new row meets at most one old row in the join, and:

    rows of the new snapshot - inserts + deletes = rows of the previous snapshot

holds exactly when no key of the previous snapshot appears twice in the new one. A repeated or NULL key among
the inserts shows in the change file itself, which is small. Only when either test fails is the whole snapshot
scanned again, to name the repeated keys. The same equation proves the read complete: a row the parser
skipped would be counted as a delete (or a missing insert) and break it, since the new snapshot's row count is
counted apart from the read (a Parquet footer, a CSV's lines).

The previous state need not be one file. A diff stores its own change file as the table's next snapshot: the
last full snapshot plus the change files since (`Baseline`), each key's latest change winning. A CSV capture
therefore writes only its changes; a full snapshot is written again when the changes since the last one outgrow
a share of it (see `capture.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from ingestion.catalog import CDC_OPERATION, CDC_SEQUENCE, CDC_TIMESTAMP, Table
from ingestion.config import DEFAULT_DUCKDB_MEMORY_LIMIT
from ingestion.duck import (
    check_io,
    check_lake,
    connect,
    copy_to_parquet,
    quote_identifier,
    relation_columns,
    same_type,
    sql_literal,
)
from ingestion.errors import (
    BadKeyError,
    BaselineMismatchError,
    CaptureStepError,
    IncompleteReadError,
    StateCountError,
)
from ingestion.readers.base import Snapshot

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class ChangeCounts:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes


@dataclass(frozen=True)
class Baseline:
    """A table's previous state: its last full snapshot and the change files applied to it since, oldest first,
    as local files or as URIs DuckDB reads in place through `filesystem` (an fsspec filesystem: S3)."""

    snapshot: Path | str
    deltas: tuple[Path | str, ...]
    rows: int  # the rows it holds, as the capture that made it counted them
    filesystem: Any | None = None


@dataclass(frozen=True)
class DiffResult:
    counts: ChangeCounts
    snapshot_rows: int
    last_sequence: int


def change_schema(table: Table) -> pa.Schema:
    """The Arrow schema of every full-load and change file of `table` (for readers of the lake)."""
    import pyarrow as pa

    cdc_fields = [
        pa.field(CDC_OPERATION, pa.string()),
        pa.field(CDC_TIMESTAMP, pa.timestamp("us", tz="UTC")),
        pa.field(CDC_SEQUENCE, pa.int64()),
    ]
    return pa.schema(cdc_fields + list(table.schema))


def _read(path: Path | str) -> str:
    return f"read_parquet({sql_literal(str(path))})"


def _null_test(table: Table, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return " or ".join(f"{prefix}{quote_identifier(k)} is null" for k in table.primary_key)


def _key_value(table: Table) -> str:
    keys = [quote_identifier(k) for k in table.primary_key]
    return keys[0] if len(keys) == 1 else f"({', '.join(keys)})"


def check_keys(con: duckdb.DuckDBPyConnection, table: Table, relation: str) -> int:
    """Raise BadKeyError if a key column is NULL or a key repeats in `relation`; return its row count."""
    null_test = _null_test(table)
    row = con.execute(
        f"select count(*), count(*) filter (where {null_test}), "
        f"count(distinct {_key_value(table)}) filter (where not ({null_test})) from {relation}"
    ).fetchall()[0]
    rows, null_keys, distinct_keys = int(row[0]), int(row[1]), int(row[2])
    key = tuple(table.primary_key)
    if null_keys:
        raise BadKeyError(table.qualified_name, key, null_rows=null_keys)
    if distinct_keys == rows:
        return rows
    # the slower search for examples runs only when a key repeats
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    duplicates = con.execute(
        f"select {keys}, count(*) as n from {relation} group by all having count(*) > 1 order by n desc, {keys} limit 5"
    ).fetchall()
    examples = "; ".join(
        ", ".join(f"{k}={v!r}" for k, v in zip(table.primary_key, dup[:-1], strict=True)) + f" ({dup[-1]} rows)"
        for dup in duplicates
    )
    (repeated,) = con.execute(
        f"select count(*) from (select 1 from {relation} group by {keys} having count(*) > 1)"
    ).fetchall()[0]
    raise BadKeyError(table.qualified_name, key, repeated=int(repeated), examples=examples)


def _declared_columns(con: duckdb.DuckDBPyConnection, table: Table, relation: str) -> str:
    """The select list that shows a stored snapshot through today's declaration: a newly declared column reads
    as NULL (so every row with a value in it is an update), a column no longer declared is left out, and a column
    whose declared type changed is read as the new type (a value that does not convert reads as NULL: its row is
    an update)."""
    present = relation_columns(con, relation)
    columns = []
    for column in table.columns:
        name = quote_identifier(column.name)
        if column.name not in present:
            columns.append(f"cast(null as {column.data_type}) as {name}")
        elif same_type(present[column.name], column.data_type):
            columns.append(name)
        else:
            columns.append(f"try_cast({name} as {column.data_type}) as {name}")
    return ", ".join(columns)


def _files(paths: tuple[Path | str, ...]) -> str:
    return "read_parquet([" + ", ".join(sql_literal(str(p)) for p in paths) + "], union_by_name = true)"


def baseline_relation(con: duckdb.DuckDBPyConnection, table: Table, baseline: Baseline) -> str:
    """The previous state as one relation of declared columns: the snapshot's rows no change file touched, and
    each touched key's latest version unless its latest change deletes it."""
    snapshot = _read(baseline.snapshot)
    base = f"select {_declared_columns(con, table, snapshot)} from {snapshot}"
    if not baseline.deltas:
        return f"({base})"
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    latest = (
        f"(select * from {_files(baseline.deltas)} "
        f"qualify row_number() over (partition by {keys} order by {CDC_SEQUENCE} desc) = 1)"
    )
    columns = _declared_columns(con, table, latest)
    on = " and ".join(f"b.{quote_identifier(k)} = d.{quote_identifier(k)}" for k in table.primary_key)
    return f"""(
        with latest as materialized {latest}
        select b.* from ({base}) as b anti join (select {keys} from latest) as d on {on}
        union all
        select {columns} from latest where {CDC_OPERATION} <> 'D'
    )"""


@dataclass(frozen=True)
class _Written:
    counts: ChangeCounts
    insert_null_keys: int
    insert_distinct_keys: int


def _write_changes(
    con: duckdb.DuckDBPyConnection,
    changes_sql: str,
    table: Table,
    captured_at: datetime,
    first_sequence: int,
    dest: Path,
    *,
    in_source_order: bool = False,
) -> _Written:
    """Write the change file; sequences follow the key, or with `in_source_order` the rows' own order (on an
    ordered connection: a full load keeps the snapshot's order, so the next diff joins two files in the same
    order, and nothing is sorted)."""
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    columns = ", ".join(quote_identifier(c) for c in table.column_names)
    timestamp = sql_literal(captured_at.strftime("%Y-%m-%d %H:%M:%S.%f+00"))
    order = "" if in_source_order else f"order by {keys}"
    copy_to_parquet(
        con,
        f"""select
                op as {CDC_OPERATION},
                cast({timestamp} as timestamptz) as {CDC_TIMESTAMP},
                cast({first_sequence} + row_number() over ({order}) - 1 as bigint) as {CDC_SEQUENCE},
                {columns}
            from ({changes_sql}) as changes""",
        dest,
        order_by=None if in_source_order else CDC_SEQUENCE,
    )
    inserts = f"{CDC_OPERATION} = 'I'"
    null_test = _null_test(table)
    row = con.execute(
        f"""select count(*) filter (where {inserts}), count(*) filter (where {CDC_OPERATION} = 'U'),
                count(*) filter (where {CDC_OPERATION} = 'D'),
                count(*) filter (where {inserts} and ({null_test})),
                count(distinct {_key_value(table)}) filter (where {inserts} and not ({null_test}))
            from {_read(dest)}"""
    ).fetchall()[0]
    return _Written(ChangeCounts(int(row[0]), int(row[1]), int(row[2])), int(row[3]), int(row[4]))


def _complete(written: _Written, rows: int, previous_rows: int) -> bool:
    """The module's equation: the change file accounts for every row of both snapshots, each key once."""
    counts = written.counts
    return (
        written.insert_null_keys == 0
        and written.insert_distinct_keys == counts.inserts
        and rows - counts.inserts + counts.deletes == previous_rows
    )


def _changes_of(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    snapshot: Snapshot,
    write: Callable[[str], _Written],
    accept: Callable[[_Written, int], bool],
    filesystem: Any | None = None,
) -> tuple[_Written, Snapshot, int]:
    """Write the change file from the snapshot as read at once; when DuckDB refuses it, or the result fails
    `accept` (given the rows the snapshot must hold), read the snapshot again the careful way, which raises
    naming what is wrong or yields the same rows with an exact count, and write again. Returns what was written,
    the snapshot it was written from, and that snapshot's expected rows."""
    try:
        written = write(snapshot.relation)
        rows = snapshot.expected_rows()
        if accept(written, rows) or snapshot.careful is None:
            return written, snapshot, rows
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        check_lake(exc, filesystem)  # the lake's stored state failed to read, not the source
        if snapshot.careful is None:
            raise
    careful = snapshot.careful()
    return write(careful.relation), careful, careful.expected_rows()


def full_load(
    table: Table,
    snapshot: Snapshot,
    captured_at: datetime,
    first_sequence: int,
    dest: Path,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> DiffResult:
    """Every row of the first snapshot as an insert, in the snapshot's own order."""
    con = connect(dest.parent, ordered=True, memory_limit=memory_limit)
    try:
        written, snapshot, expected = _changes_of(
            con,
            table,
            snapshot,
            lambda relation: _write_changes(
                con,
                f"select 'I' as op, * from {relation}",
                table,
                captured_at,
                first_sequence,
                dest,
                in_source_order=True,
            ),
            lambda written, rows: written.counts.inserts == rows,
        )
        if written.counts.inserts != expected:
            raise IncompleteReadError(table.qualified_name, written.counts.inserts, expected)
        if written.insert_null_keys or written.insert_distinct_keys != written.counts.inserts:
            check_keys(con, table, _read(dest))  # names the NULL or repeated keys
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        raise CaptureStepError(table.qualified_name, "full load", str(exc).splitlines()[0]) from exc
    finally:
        con.close()
    rows = written.counts.inserts
    return DiffResult(written.counts, rows, first_sequence + rows - 1)


def _diff_sql(con: duckdb.DuckDBPyConnection, table: Table, baseline: Baseline, current: str) -> str:
    join = " and ".join(f"o.{quote_identifier(k)} = n.{quote_identifier(k)}" for k in table.primary_key)
    first_key = quote_identifier(table.primary_key[0])
    non_keys = [c for c in table.column_names if c not in table.primary_key]
    changed = (
        " or ".join(f"o.{quote_identifier(c)} is distinct from n.{quote_identifier(c)}" for c in non_keys) or "false"
    )
    payload = ", ".join(
        f"cast(case when n.{first_key} is null then o.{quote_identifier(c.name)} "
        f"else n.{quote_identifier(c.name)} end as {c.data_type}) as {quote_identifier(c.name)}"
        for c in table.columns
    )
    return f"""
        select
            case when o.{first_key} is null then 'I' when n.{first_key} is null then 'D' else 'U' end as op,
            {payload}
        from {current} as n
        full outer join {baseline_relation(con, table, baseline)} as o on {join}
        where o.{first_key} is null or n.{first_key} is null or ({changed})
    """


def diff(
    table: Table,
    baseline: Baseline,
    current: Snapshot,
    captured_at: datetime,
    first_sequence: int,
    dest: Path,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> DiffResult:
    """The changes that turn `baseline` into `current`. Writes `dest` only when there is a change."""
    con = connect(dest.parent, ordered=False, memory_limit=memory_limit)
    if baseline.filesystem is not None:
        con.register_filesystem(baseline.filesystem)
    try:
        written, current, rows = _changes_of(
            con,
            table,
            current,
            lambda relation: _write_changes(
                con, _diff_sql(con, table, baseline, relation), table, captured_at, first_sequence, dest
            ),
            lambda written, rows: _complete(written, rows, baseline.rows),
            baseline.filesystem,
        )
        if not _complete(written, rows, baseline.rows):
            dest.unlink(missing_ok=True)
            check_keys(con, table, current.relation)  # names the NULL or repeated keys
            raise BaselineMismatchError(table.qualified_name, baseline.rows, table.primary_key)
        counts = written.counts
        if counts.total == 0:
            dest.unlink(missing_ok=True)
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        check_lake(exc, baseline.filesystem)
        raise CaptureStepError(table.qualified_name, "diff", str(exc).splitlines()[0]) from exc
    finally:
        con.close()
    return DiffResult(counts, rows, first_sequence + counts.total - 1)


def compact(
    table: Table,
    baseline: Baseline,
    changes: Path,
    rows: int,
    dest: Path,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> Path:
    """The state after `changes` as one Parquet snapshot at `dest`: `baseline` with the change file applied, so the
    stored state is exactly what the change log says (see `baseline_relation`). `rows` is the count the diff
    found; a different count is refused."""
    con = connect(dest.parent, ordered=True, memory_limit=memory_limit)
    if baseline.filesystem is not None:
        con.register_filesystem(baseline.filesystem)
    after = Baseline(baseline.snapshot, (*baseline.deltas, changes), rows, baseline.filesystem)
    try:
        written = copy_to_parquet(con, f"select * from {baseline_relation(con, table, after)}", dest)
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        check_lake(exc, baseline.filesystem)
        raise CaptureStepError(table.qualified_name, "writing the full snapshot", str(exc).splitlines()[0]) from exc
    finally:
        con.close()
    if written != rows:
        raise StateCountError(table.qualified_name, written, rows)
    return dest
