"""Postgres snapshot mode against its floor: `--suites postgres`.

A table shaped like `loyalty.clientes` (uuid text, five flags, points, two text times) of each scale is written into
a Postgres of its own (the project's local Postgres helper, on a free port) and read two ways, each in a fresh
process: the snapshot reader (`COPY (SELECT ...) TO STDOUT` in one REPEATABLE READ transaction, DuckDB casting to
the declared types into Parquet, the row count and the key checked), and a bare `COPY ... TO STDOUT` of the table
as CSV into a file that DuckDB writes to Parquet with the types it detects, nothing checked. Both are whole
commands (`python -m bench.postgres read|copy FOLDER`), the interpreter's start included on both sides.

The issue's target: snapshot mode within 1.5x the bare COPY (reported by `targets`, never asserted).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.common import Result

SUITE = "postgres"
READ, BARE = "snapshot mode", "bare COPY to Parquet"
_DSN = "LAGO_POSTGRES_DSN"


def fill(dsn: str, rows: int) -> None:
    """`public.clientes` with `rows` rows, created from its declaration."""
    import psycopg

    from ingestion.catalog import load_catalog
    from ingestion.postgres.schema import create_table

    table = load_catalog().source("loyalty").table("clientes")
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_table(conn, table)
        conn.execute(
            """insert into public.clientes
            select md5(i::text)::uuid::text, i %% 2, i %% 3, (i %% 5 = 0)::int, null, i %% 7, i * 13 %% 5000,
                to_char(timestamp '2024-01-01' + i * interval '1 second', 'YYYY-MM-DD HH24:MI:SS.MS'),
                to_char(timestamp '2025-01-01' + i * interval '1 second', 'YYYY-MM-DD HH24:MI:SS.MS')
            from generate_series(1, %s) as i""",
            (rows,),
        )
        conn.execute("vacuum analyze public.clientes")


def read(folder: Path) -> int:
    """The snapshot reader's read of the table."""
    from ingestion.catalog import load_catalog
    from ingestion.readers.base import CaptureContext
    from ingestion.readers.postgres import PostgresReader

    table = load_catalog().source("loyalty").table("clientes")
    reader = PostgresReader(os.environ[_DSN])
    rows = reader.read(table, CaptureContext(folder)).expected_rows()
    reader.close()
    return rows


def copy(folder: Path) -> int:
    """The floor: COPY's CSV into a file, DuckDB's detected types into Parquet."""
    import duckdb
    import psycopg

    csv = folder / "bare.csv"
    with (
        psycopg.connect(os.environ[_DSN]) as conn,
        conn.cursor() as cursor,
        csv.open("wb") as out,
        cursor.copy("copy public.clientes to stdout (format csv)") as stream,
    ):
        for block in stream:
            out.write(block)
    con = duckdb.connect()
    row = con.execute(
        f"copy (select * from read_csv('{csv}', header = false)) to '{folder / 'bare.parquet'}' "
        "(format parquet, compression snappy)"
    ).fetchone()
    con.close()
    csv.unlink()
    return int(row[0]) if row else 0


def suite_postgres(scales: list[int], repeats: int, work: Path) -> list[Result]:
    from bench.common import PYTHON, Result, measure
    from orchestration.local_postgres import temporary_cluster

    results: list[Result] = []
    cluster = temporary_cluster()
    cluster.start()
    try:
        for rows in scales:
            dsn = cluster.create_database(f"bench_{rows}")
            fill(dsn, rows)
            for case, how in ((READ, "read"), (BARE, "copy")):
                folder = work / f"postgres_{rows}_{how}"

                def fresh(folder: Path = folder) -> None:
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir(parents=True)

                command = ["command", PYTHON, "-m", "bench.postgres", how, str(folder)]
                seconds, rss, _, _ = measure(command, repeats, prepare=fresh, env={_DSN: dsn})
                results.append(Result(SUITE, case, rows, seconds, rss, repeats))
                print(f"postgres {case:<22} {rows:>12,} rows  {seconds:8.2f} s  {rss:8.0f} MB", flush=True)
    finally:
        cluster.stop(graceful=False)
        shutil.rmtree(cluster.workdir, ignore_errors=True)
    return results


def targets(results: list[Result]) -> list[str]:
    """Snapshot mode within 1.5x the bare COPY, at each scale measured."""
    lines = []
    for rows in sorted({r.rows for r in results if r.suite == SUITE}):
        found = {r.case: r for r in results if r.suite == SUITE and r.rows == rows and r.seconds == r.seconds}
        if READ in found and BARE in found and found[BARE].seconds > 0:
            over = found[READ].seconds / found[BARE].seconds
            lines.append(
                f"| Postgres snapshot mode within 1.5x a bare COPY into Parquet at {rows:,} rows | {over:.2f}x | "
                f"{'yes' if over <= 1.5 else 'no'} |"
            )
    return lines


def main(argv: list[str]) -> int:
    how, folder = argv
    rows = {"read": read, "copy": copy}[how](Path(folder))
    print(f"{rows} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
