"""A partial read applied to a table's stored state: the next snapshot of a table read through a window.

A database cursor reads only the rows whose cursor column moved (see `readers/postgres.py`). The capture still
diffs whole snapshots, so the diff, its exactness checks and the change file are written once (`cdc.py`): the
next snapshot is the stored state with the rows read replacing theirs by key, and, when the reader also scanned
every key of the source, without the keys the source no longer has. A row read again without a change therefore
publishes nothing, and a row the window did not reach keeps its stored version.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ingestion import cdc
from ingestion.catalog import Table
from ingestion.duck import check_io, check_lake, connect, copy_to_parquet, quote_identifier, sql_literal
from ingestion.errors import ApplyWindowError
from ingestion.readers.base import Snapshot


def apply_window(table: Table, baseline: cdc.Baseline, window: Snapshot, dest: Path, memory_limit: str) -> Snapshot:
    """The stored state with `window`'s rows upserted by key (and its key scan applied) as a Parquet snapshot."""
    con = connect(dest.parent, ordered=True, memory_limit=memory_limit)
    if baseline.filesystem is not None:
        con.register_filesystem(baseline.filesystem)
    columns = ", ".join(quote_identifier(c) for c in table.column_names)

    def same_key(left: str, right: str) -> str:
        return " and ".join(f"{left}.{quote_identifier(k)} = {right}.{quote_identifier(k)}" for k in table.primary_key)

    kept = (
        f"select {columns} from {cdc.baseline_relation(con, table, baseline)} as b "
        f"where not exists (select 1 from {window.relation} as w where {same_key('b', 'w')})"
    )
    if window.keys is not None:
        kept += f" and exists (select 1 from {window.keys} as k where {same_key('b', 'k')})"
    try:
        rows = copy_to_parquet(con, f"{kept} union all select {columns} from {window.relation}", dest)
    except duckdb.Error as exc:
        check_io(exc, f"table {table.qualified_name}")
        check_lake(exc, baseline.filesystem)
        raise ApplyWindowError(table.qualified_name, str(exc).splitlines()[0]) from exc
    finally:
        con.close()
    return Snapshot(f"read_parquet({sql_literal(str(dest))})", lambda: rows)
