"""Alternatives to the project's CDC diff, measured against it on the same two Parquet files.

- `duckdb_join`: the floor. One FULL OUTER JOIN of the two files in DuckDB, every non-key column compared
  with IS DISTINCT FROM, written to Parquet. No key checks, no sequences, no typed casts.
- `pandas_hash`: the common hand-written approach. Load both files into pandas, hash every row with
  `DataFrame.apply`, merge on the key and compare hashes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pandas as pd


def duckdb_join(old: Path, new: Path, key: str, columns: list[str], dest: Path) -> int:
    con = duckdb.connect()
    changed = " or ".join(f'o."{c}" is distinct from n."{c}"' for c in columns if c != key)
    payload = ", ".join(f'coalesce(n."{c}", o."{c}") as "{c}"' if c == key else f'n."{c}"' for c in columns)
    con.execute(
        f"""copy (
            select case when o."{key}" is null then 'I' when n."{key}" is null then 'D' else 'U' end as op,
                {payload}
            from read_parquet('{old}') as o
            full outer join read_parquet('{new}') as n on o."{key}" = n."{key}"
            where o."{key}" is null or n."{key}" is null or {changed}
        ) to '{dest}' (format parquet, compression snappy)"""
    )
    row = con.execute(f"select count(*) from read_parquet('{dest}')").fetchone()
    return int(row[0]) if row else 0


def _row_hash(row: pd.Series) -> str:
    return hashlib.md5("|".join("" if pd.isna(v) else str(v) for v in row.values).encode()).hexdigest()


def pandas_hash(old: Path, new: Path, key: str, columns: list[str], dest: Path) -> int:
    before = pd.read_parquet(old)
    after = pd.read_parquet(new)
    before["_hash"] = before[columns].apply(_row_hash, axis=1)
    after["_hash"] = after[columns].apply(_row_hash, axis=1)
    merged = before[[key, "_hash"]].merge(after, on=key, how="outer", suffixes=("_old", ""), indicator=True)
    inserts = merged[merged["_merge"] == "right_only"].assign(op="I")
    updates = merged[(merged["_merge"] == "both") & (merged["_hash_old"] != merged["_hash"])].assign(op="U")
    deleted_keys = merged.loc[merged["_merge"] == "left_only", key]
    deletes = before[before[key].isin(deleted_keys)].assign(op="D")
    changes = pd.concat([inserts[["op", *columns]], updates[["op", *columns]], deletes[["op", *columns]]])
    changes.to_parquet(dest, compression="snappy", index=False)
    return len(changes)
