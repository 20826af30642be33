"""A folder of `<table>.csv` files: the user's own snapshots, and the format of the Kaggle dataset."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ingestion.catalog import Table
from ingestion.duck import connect, quote_identifier, sql_literal, write_parquet
from ingestion.errors import SnapshotError
from ingestion.readers.base import CaptureContext


def csv_to_parquet(table: Table, csv_path: Path, dest: Path) -> Path:
    """Read `csv_path` as text, check its header and values against `table`, write typed Parquet to `dest`.

    Every value is read as text first so that a bad value is reported with its column and line instead of a
    type-sniffing guess; empty fields are NULL.
    """
    where = f"table {table.qualified_name}, file {csv_path.name}"
    if not csv_path.is_file():
        raise SnapshotError(f"{where}: file not found")
    raw = csv_path.read_bytes()
    if not raw.strip():
        raise SnapshotError(f"{where}: file is empty (expected a header line with {', '.join(table.column_names)})")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SnapshotError(f"{where}: line {line} is not valid UTF-8 (byte offset {exc.start})") from exc

    header = raw.splitlines()[0].decode("utf-8").lstrip("\ufeff")
    names = [name.strip().strip('"') for name in header.split(table.csv_separator)]
    if len(names) == 1 and len(table.columns) > 1:
        raise SnapshotError(
            f"{where}: the header has a single column {names[0]!r}; the declared separator is "
            f"{table.csv_separator!r} — is the file written with another separator?"
        )
    missing = [c for c in table.column_names if c not in names]
    if missing:
        raise SnapshotError(f"{where}: missing column(s) {', '.join(missing)} (header: {', '.join(names)})")
    extra = [n for n in names if n not in table.column_names]
    if extra:
        raise SnapshotError(
            f"{where}: column(s) {', '.join(extra)} are not declared; declare them in the sources YAML "
            "(a new column then flows into the lake with the next capture)"
        )

    columns_spec = "{" + ", ".join(f"{sql_literal(n)}: 'VARCHAR'" for n in names) + "}"
    con = connect(context_dir=dest.parent)
    try:
        con.execute(
            f"""create temp table raw_csv as
            select row_number() over () + 1 as _line, *
            from read_csv({sql_literal(str(csv_path))}, delim={sql_literal(table.csv_separator)},
                header=true, columns={columns_spec}, quote='"', escape='"', strict_mode=true,
                null_padding=false, auto_detect=false, encoding='utf-8')"""
        )
        rows = con.execute("select count(*) from raw_csv").fetchall()[0][0]
        if rows == 0:
            raise SnapshotError(f"{where}: the file has a header but no rows; refusing to capture an empty table")
        casts = []
        for column in table.columns:
            name = quote_identifier(column.name)
            value = f"nullif(trim({name}), '')" if column.data_type != "varchar" else name
            if column.data_type != "varchar":
                bad = con.execute(
                    f"select _line, {name} from raw_csv where {value} is not null "
                    f"and try_cast({value} as {column.data_type}) is null limit 1"
                ).fetchall()
                if bad:
                    raise SnapshotError(
                        f"{where}: line {bad[0][0]}: column {column.name} has {bad[0][1]!r}, "
                        f"which is not a valid {column.data_type}"
                    )
            casts.append(f"cast({value} as {column.data_type}) as {name}")
        write_parquet(con, f"select {', '.join(casts)} from raw_csv order by _line", table.schema, dest)
    except duckdb.Error as exc:
        raise SnapshotError(f"{where}: cannot be read as CSV: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
    return dest


class CsvFolderReader:
    """Reads `<folder>/<table>.csv` for each table."""

    name = "csv"

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise SnapshotError(f"CSV folder {folder} does not exist")
        self.folder = folder

    def available_tables(self, tables: list[Table]) -> list[Table]:
        return [t for t in tables if (self.folder / f"{t.name}.csv").is_file()]

    def read(self, table: Table, context: CaptureContext) -> Path:
        return csv_to_parquet(table, self.folder / f"{table.name}.csv", context.workdir / f"{table.name}.parquet")
