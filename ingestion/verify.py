"""Capture receipts: `python -m ingestion verify <source>.<table>` compares a table in its source with the lake.

Both sides are brought to the same form and hashed row by row in one DuckDB: the source read whole, in one
snapshot, through the reader's own typed path (a database's COPY into Parquet with the declared types); the lake
replayed from its change log, the files dbt reads (`raw/<source>/{full-load,cdc}/<table>/`), each key's latest
change by (`_cdc_timestamp`, `_cdc_sequence`) winning and deleted keys dropped. The capture state's stored
snapshot is never read, so the receipt checks what the lake publishes, whatever mode captured it (a snapshot diff,
a cursor window, a database's log). A row's hash is the MD5 of its declared columns as JSON (NULL and the text
'NULL' differ); the table's digest is the MD5 of its rows' hashes in order, the same on both sides when they hold
the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from ingestion.catalog import CDC_OPERATION, CDC_SEQUENCE, CDC_TIMESTAMP, Table
from ingestion.config import DEFAULT_DUCKDB_MEMORY_LIMIT
from ingestion.duck import check_io, check_lake, connect, quote_identifier, sql_literal
from ingestion.errors import ReplayError
from ingestion.lake import Lake
from ingestion.readers.base import CaptureContext, SnapshotReader
from ingestion.table_store import TableStore

Difference = Literal["missing in lake", "missing in source", "different"]
DIFFERENCES: tuple[Difference, ...] = ("missing in lake", "missing in source", "different")
# keys named per kind of difference; the counts are always whole
EXAMPLES = 20
# the published files a table's state is replayed from (events sources append, and are not replayed by key)
_CHANGE_KINDS = ("full-load", "cdc")


@dataclass(frozen=True)
class Receipt:
    """What `verify` found for one table."""

    table: str
    source_rows: int
    lake_rows: int
    source_digest: str
    lake_digest: str
    files: int  # change files replayed
    counts: dict[Difference, int]
    # up to EXAMPLES keys of each kind, each as ((column, value), ...)
    examples: dict[Difference, list[tuple[tuple[str, Any], ...]]] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return not any(self.counts.values()) and self.source_digest == self.lake_digest

    def describe(self) -> list[str]:
        if self.equal:
            return [
                f"{self.table}: equal, {self.source_rows} rows (digest {self.source_digest}, "
                f"{self.files} change file(s) replayed)"
            ]
        found = ", ".join(f"{self.counts[kind]} {kind}" for kind in DIFFERENCES)
        lines = [f"{self.table}: differs: source {self.source_rows} rows, lake {self.lake_rows} rows; {found}"]
        for kind in DIFFERENCES:
            for key in self.examples.get(kind, []):
                lines.append(f"  {kind}: " + ", ".join(f"{name}={value!r}" for name, value in key))
            more = self.counts[kind] - len(self.examples.get(kind, []))
            if more > 0:
                lines.append(f"  ... and {more} more {kind}")
        return lines


def _hashed(table: Table, relation: str) -> str:
    """`relation` as (key columns, row hash), every column cast to its declared type."""
    typed = ", ".join(
        f"cast({quote_identifier(c.name)} as {c.data_type}) as {quote_identifier(c.name)}" for c in table.columns
    )
    row = "{" + ", ".join(f"{sql_literal(c)}: {quote_identifier(c)}" for c in table.column_names) + "}"
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    return f"(select {keys}, md5(to_json({row})) as _row_hash from (select {typed} from {relation}))"


def replayed(table: Table, files: list[str]) -> str:
    """The table's state after its change files: each key's latest change, unless it deletes the key."""
    if not files:
        columns = ", ".join(f"cast(null as {c.data_type}) as {quote_identifier(c.name)}" for c in table.columns)
        return f"(select {columns} where false)"
    keys = ", ".join(quote_identifier(k) for k in table.primary_key)
    listed = ", ".join(sql_literal(f) for f in files)
    return f"""(select * from (
            select * from read_parquet([{listed}], union_by_name = true)
            qualify row_number() over (
                partition by {keys} order by {CDC_TIMESTAMP} desc, {CDC_SEQUENCE} desc
            ) = 1
        ) where {CDC_OPERATION} <> 'D')"""


def verify_table(
    lake: Lake,
    table: Table,
    reader: SnapshotReader,
    workdir: Path,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> Receipt:
    """Compare `table` in its source (read now, whole) with the lake's replayed change log."""
    source_dir = workdir / "source"
    source_dir.mkdir(parents=True, exist_ok=True)
    snapshot = reader.read(table, CaptureContext(source_dir, duckdb_memory_limit=memory_limit))
    source = snapshot.to_parquet(source_dir / f"{table.name}.parquet", table, memory_limit)
    store = TableStore(lake, table)
    keys = [k for k in store.published_keys() if k.split("/")[2] in _CHANGE_KINDS]
    filesystem = lake.duckdb_filesystem()
    files: list[str] = []
    for i, key in enumerate(sorted(keys)):
        location = lake.local_path(key) or (lake.stream_uri(key) if filesystem is not None else None)
        files.append(str(location or lake.download(key, workdir / f"change_{i}.parquet")))
    con = connect(workdir, ordered=False, memory_limit=memory_limit)
    if filesystem is not None:
        con.register_filesystem(filesystem)
    try:
        return _compare(con, table, f"read_parquet({sql_literal(str(source))})", replayed(table, files), len(files))
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        check_lake(exc, filesystem)
        raise ReplayError(table.qualified_name, str(exc).splitlines()[0]) from exc
    finally:
        con.close()


def _compare(con: duckdb.DuckDBPyConnection, table: Table, source: str, lake: str, files: int) -> Receipt:
    con.execute(f"create temp table source_rows as select * from {_hashed(table, source)}")
    con.execute(f"create temp table lake_rows as select * from {_hashed(table, lake)}")
    keys = [quote_identifier(k) for k in table.primary_key]
    on = " and ".join(f"s.{k} = l.{k}" for k in keys)
    picked = ", ".join(f"coalesce(s.{k}, l.{k}) as {k}" for k in keys)
    con.execute(
        f"""create temp table differences as
            select case when l._row_hash is null then 'missing in lake'
                        when s._row_hash is null then 'missing in source'
                        else 'different' end as kind,
                   {picked}
            from source_rows as s full outer join lake_rows as l on {on}
            where s._row_hash is distinct from l._row_hash"""
    )
    counts: dict[Difference, int] = dict.fromkeys(DIFFERENCES, 0)
    for kind, n in con.execute("select kind, count(*) from differences group by kind").fetchall():
        counts[kind] = int(n)
    examples: dict[Difference, list[tuple[tuple[str, Any], ...]]] = {}
    for kind in DIFFERENCES:
        rows = con.execute(
            f"select {', '.join(keys)} from differences where kind = ? order by all limit {EXAMPLES}", [kind]
        ).fetchall()
        examples[kind] = [tuple(zip(table.primary_key, row, strict=True)) for row in rows]

    def digest(name: str) -> tuple[int, str]:
        (rows, value) = con.execute(
            f"select count(*), md5(coalesce(string_agg(_row_hash, '' order by _row_hash), '')) from {name}"
        ).fetchall()[0]
        return int(rows), str(value)

    source_rows, source_digest = digest("source_rows")
    lake_rows, lake_digest = digest("lake_rows")
    return Receipt(table.qualified_name, source_rows, lake_rows, source_digest, lake_digest, files, counts, examples)
