"""`python -m ingestion.postgres.simulate`: the simulator's next day written into a Postgres database.

The database then holds exactly the simulator's state of that day, table by table: rows the day no longer has are
deleted, changed rows updated, new rows inserted (by the declared key), all tables and the day counter in one
transaction, so a capture sees the database at one day or the next, never between. The first run writes day 0
(creating the declared tables that are missing); each later run the next day. The day, seed and scale are kept in
the database (`lago_mago.simulator_day`), so a database follows one simulation.

Each day is computed by the same simulator as `python -m ingestion run --from simulator`, written to Parquet by
DuckDB, and loaded with `COPY ... FROM STDIN` into a staging table: no row becomes a Python object.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ingestion.catalog import Table, load_catalog
from ingestion.config import Config
from ingestion.duck import connect, quote_identifier, sql_literal
from ingestion.errors import IngestionError
from ingestion.postgres.connection import connect as connect_postgres
from ingestion.postgres.connection import endpoint_of, redact, resolve_dsn
from ingestion.postgres.errors import PostgresAccessError, SimulatedDatabaseError
from ingestion.postgres.schema import create_table, relation_of, resolve_columns
from ingestion.readers.base import CaptureContext
from ingestion.readers.simulator import SimulatorReader

log = logging.getLogger("ingestion.postgres.simulate")

SOURCE = "loyalty"
_STATE = sql.SQL("lago_mago.simulator_day")


@dataclass(frozen=True)
class TableChanges:
    table: str
    inserts: int
    updates: int
    deletes: int


def apply_next_day(dsn: str, *, scale: int = 10_000, seed: int = 42, workdir: Path | None = None) -> int:
    """Write the simulator's next day into the database; returns that day."""
    reader = SimulatorReader(scale=scale, seed=seed)
    tables = list(load_catalog().source(SOURCE).tables.values())
    endpoint = endpoint_of(dsn)
    with (
        tempfile.TemporaryDirectory(prefix="lago-simulate-", dir=workdir) as folder,
        connect_postgres(dsn) as conn,
    ):
        try:
            day = _next_day(conn, str(endpoint.database), scale, seed)
            for table in tables:
                create_table(conn, table)
                changes = _apply_table(conn, reader, table, day, Path(folder))
                log.info("%s: I=%d U=%d D=%d", changes.table, changes.inserts, changes.updates, changes.deletes)
            conn.execute(sql.SQL("update {} set day = %s").format(_STATE), (day,))
            conn.commit()
        except psycopg.Error as exc:
            reason = " ".join(redact(str(exc), dsn).split())
            raise PostgresAccessError(str(endpoint), f"writing the simulator's day failed: {reason}") from None
    log.info("Postgres %s now holds the simulator's day %d (seed %d, scale %d)", endpoint, day, seed, scale)
    return day


def _next_day(conn: psycopg.Connection[tuple[object, ...]], database: str, scale: int, seed: int) -> int:
    """The day to write, under a lock that keeps two runs from writing the same database at once."""
    conn.execute("create schema if not exists lago_mago")
    conn.execute(sql.SQL("create table if not exists {} (seed bigint, scale bigint, day integer)").format(_STATE))
    conn.execute(sql.SQL("lock table {} in exclusive mode").format(_STATE))
    held = conn.execute(sql.SQL("select seed, scale, day from {}").format(_STATE)).fetchone()
    if held is None:
        conn.execute(sql.SQL("insert into {} values (%s, %s, -1)").format(_STATE), (seed, scale))
        return 0
    held_seed, held_scale, day = (int(str(v)) for v in held)
    if (held_seed, held_scale) != (seed, scale):
        raise SimulatedDatabaseError(
            database,
            f"day {day} of the simulation with seed {held_seed}, scale {held_scale}",
            f"seed {seed}, scale {scale}",
        )
    return day + 1


def _apply_table(
    conn: psycopg.Connection[tuple[object, ...]], reader: SimulatorReader, table: Table, day: int, folder: Path
) -> TableChanges:
    table_dir = folder / table.name
    table_dir.mkdir()
    snapshot = reader.read(table, CaptureContext(table_dir, day))
    assert snapshot.file is not None
    csv_path = table_dir / f"{table.name}.csv"
    _parquet_to_csv(table, snapshot.file, csv_path)

    schema, name = relation_of(table)
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
    columns = [c.name for c in resolve_columns(conn, table)]
    key = [columns[table.column_names.index(k)] for k in table.primary_key]
    others = [c for c in columns if c not in key]
    stage = sql.Identifier(f"stage_{table.name}")
    column_list = sql.SQL(", ").join(map(sql.Identifier, columns))

    conn.execute(sql.SQL("create temp table {} as select {} from {} limit 0").format(stage, column_list, target))
    with (
        conn.cursor() as cursor,
        cursor.copy(sql.SQL("copy {} ({}) from stdin (format csv)").format(stage, column_list)) as copy,
        csv_path.open("rb") as source,
    ):
        while block := source.read(1 << 20):
            copy.write(block)

    def same(left: str, right: str, names: list[str]) -> sql.Composable:
        return sql.SQL(" and ").join(
            sql.SQL("{}.{} = {}.{}").format(
                sql.Identifier(left), sql.Identifier(n), sql.Identifier(right), sql.Identifier(n)
            )
            for n in names
        )

    deletes = conn.execute(
        sql.SQL("delete from {} as t where not exists (select from {} as s where {})").format(
            target, stage, same("s", "t", key)
        )
    ).rowcount
    updates = 0
    if others:
        assignments = sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(n)) for n in others)
        row = sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier("t"), sql.Identifier(n)) for n in others)
        staged = sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier("s"), sql.Identifier(n)) for n in others)
        updates = conn.execute(
            sql.SQL("update {} as t set {} from {} as s where {} and row({}) is distinct from row({})").format(
                target, assignments, stage, same("s", "t", key), row, staged
            )
        ).rowcount
    inserts = conn.execute(
        sql.SQL("insert into {} ({}) select {} from {} as s where not exists (select from {} as t where {})").format(
            target, column_list, column_list, stage, target, same("s", "t", key)
        )
    ).rowcount
    conn.execute(sql.SQL("drop table {}").format(stage))
    return TableChanges(table.qualified_name, inserts, updates, deletes)


def _parquet_to_csv(table: Table, parquet: Path, dest: Path) -> None:
    """The day's rows as CSV for COPY: every text value quoted, so an empty text stays apart from NULL."""
    names = ", ".join(quote_identifier(c) for c in table.column_names)
    texts = ", ".join(quote_identifier(c.name) for c in table.columns if c.data_type.lower() == "varchar")
    quoted = f", force_quote ({texts})" if texts else ""
    con = connect(dest.parent)
    try:
        con.execute(
            f"copy (select {names} from read_parquet({sql_literal(str(parquet))})) to {sql_literal(str(dest))} "
            f"(format csv, header false{quoted})"
        )
    finally:
        con.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion.postgres.simulate",
        description="Write the loyalty simulator's next day into a Postgres database (inserts, updates, deletes).",
    )
    parser.add_argument("--dsn", help="connection string (default: env LAGO_POSTGRES_DSN)")
    parser.add_argument("--scale", type=int, default=10_000, help="customers on day 0 (default 10000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    try:
        day = apply_next_day(resolve_dsn(args.dsn, Config.from_env().postgres_dsn), scale=args.scale, seed=args.seed)
    except IngestionError as exc:
        log.error("%s", exc)
        return exc.exit_code
    log.info("day %d written in %.1f s", day, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
