"""A Postgres source that is wrong: each case is a clear error naming what is wrong (the endpoint without its
password, the table, the column, the type), a non-zero exit, and the lake unchanged byte for byte.

Every case starts from one lake that holds a capture of a database at the simulator's day 0; the case's database is
a copy of that one (`CREATE DATABASE ... TEMPLATE`) moved to day 1, so a run that did not refuse would publish.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pgserver import PostgresCluster, fresh_database, simulate_day
from psycopg import sql
from reliability_support import LocalView, Recorder, change_rows, compare, fingerprint, ingest

SIMULATOR = ("--scale", "50", "--seed", "42")
POSTGRES = ("--source", "loyalty", "--from", "postgres")


@dataclass(frozen=True)
class Base:
    dsn: str
    database: str
    lake: Path


@pytest.fixture(scope="module")
def base(postgres_server: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Base:
    dsn = fresh_database(postgres_server, "base")
    assert simulate_day(dsn, *SIMULATOR).returncode == 0
    lake = tmp_path_factory.mktemp("postgres-base") / "lake"
    ingest(lake, *POSTGRES, "--dsn", dsn, check=True)
    return Base(dsn, dsn.rsplit("/", 1)[1], lake)


def _copy(postgres_server: PostgresCluster, base: Base, name: str) -> str:
    """A copy of the base database moved to the simulator's next day."""
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(base.database))
        )
    dsn = postgres_server.dsn(name)
    written = simulate_day(dsn, *SIMULATOR)
    assert written.returncode == 0, written.stderr[-2000:]
    return dsn


def _error_line(stderr: str) -> str:
    errors = [line.split(" ERROR ", 1)[1] for line in stderr.splitlines() if " ERROR " in line]
    return errors[-1] if errors else stderr.strip()[-300:]


def _run_on_copy(base: Base, tmp_path: Path, report: Recorder, scenario: str, *args: str) -> tuple[int, str, str]:
    """The capture on a copy of the base lake; checks the lake is unchanged and reports the line."""
    lake = tmp_path / "lake"
    shutil.copytree(base.lake, lake)
    before_files, before_rows = fingerprint(LocalView(lake)), change_rows(LocalView(lake))
    result = ingest(lake, *POSTGRES, *args, env={"LAGO_POSTGRES_DSN": None})
    message = _error_line(result.stderr)
    rows = compare(before_rows, change_rows(LocalView(lake)))
    report.record(
        f"postgres: {scenario}",
        runs=1,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note=f"exit {result.returncode}: {message[:110]}",
    )
    assert fingerprint(LocalView(lake)) == before_files, "the failed run changed the lake"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.returncode, message, result.stdout + result.stderr


@dataclass(frozen=True)
class Broken:
    name: str
    change: str
    says: tuple[str, ...]


TABLE_CASES = [
    Broken(
        "a declared table missing in the database",
        "drop table public.transacoes",
        ("table loyalty.transacoes", "public.transacoes does not exist", "--tables"),
    ),
    Broken(
        "a declared column missing in the database",
        'alter table public.clientes drop column "qtdePontos"',
        ("table loyalty.clientes", "has no column qtdePontos"),
    ),
    Broken(
        "a column of an incompatible type (numeric without a scale for a bigint)",
        'alter table public.clientes alter column "qtdePontos" type numeric',
        ("table loyalty.clientes", "column qtdePontos", "is numeric", "declared bigint"),
    ),
    Broken(
        "a column of an incompatible type (text for an integer)",
        'alter table public.produtos alter column "IdProduto" type text',
        ("table loyalty.produtos", "column IdProduto", "is text", "declared integer"),
    ),
    Broken(
        "a NULL in a key column of a table without a primary key",
        "alter table public.clientes drop constraint clientes_pkey; "
        'alter table public.clientes alter column "idCliente" drop not null; '
        """insert into public.clientes ("idCliente", "qtdePontos") values (null, 1), (null, 2)""",
        ("table loyalty.clientes", "2 row(s)", "NULL in primary key column idCliente"),
    ),
]


@pytest.mark.parametrize("case", TABLE_CASES, ids=[c.name for c in TABLE_CASES])
def test_a_database_that_does_not_match_its_declaration_is_refused(
    case: Broken, base: Base, postgres_server: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    dsn = _copy(postgres_server, base, f"case_{tmp_path.name[-20:].lower()}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(case.change)  # type: ignore[arg-type]
    code, message, _ = _run_on_copy(base, tmp_path, report, case.name, "--dsn", dsn)
    assert code == 3, message
    for fact in case.says:
        assert fact in message, message


def test_a_table_without_a_primary_key_is_captured(
    base: Base, postgres_server: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    """Snapshot mode diffs by the declared key: the database need not have one."""
    dsn = _copy(postgres_server, base, "no_primary_key")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("clientes", "produtos", "transacoes", "transacao_produto"):
            conn.execute(
                sql.SQL("alter table public.{} drop constraint {}").format(
                    sql.Identifier(table), sql.Identifier(f"{table}_pkey")
                )
            )
    lake = tmp_path / "lake"
    shutil.copytree(base.lake, lake)
    before = change_rows(LocalView(lake))
    result = ingest(lake, *POSTGRES, "--dsn", dsn)
    assert result.returncode == 0, result.stderr[-3000:]
    new = change_rows(LocalView(lake)) - before
    report.record(
        "postgres: tables without a primary key (the declared key is used)", runs=1, expected=sum(new.values())
    )
    assert {row[0] for row in new} == {"cdc"} and {row[2] for row in new} >= {"I", "U"}


Dsn = Callable[[PostgresCluster, Base], str]

ACCESS_CASES: list[tuple[str, Dsn, int, tuple[str, ...]]] = [
    (
        "a wrong password",
        lambda server, base: server.dsn(base.database, password="not-the-password-1234"),
        3,
        ("127.0.0.1", "database base_", "user lago", "password authentication failed"),
    ),
    (
        "a database that does not exist",
        lambda server, base: server.dsn("no_such_database"),
        3,
        ("database no_such_database", "does not exist"),
    ),
    (
        "a port where nothing listens",
        lambda server, base: server.dsn(base.database).replace(f":{server.port}/", ":9/"),
        3,
        ("127.0.0.1:9", "cannot connect"),
    ),
    (
        "an unparsable connection string",
        lambda server, base: f"host=127.0.0.1 password={server.password} garbage",
        3,
        ("not a URI",),
    ),
]


@pytest.mark.parametrize("case", ACCESS_CASES, ids=[c[0] for c in ACCESS_CASES])
def test_a_database_that_cannot_be_reached_is_named_without_its_password(
    case: tuple[str, Dsn, int, tuple[str, ...]],
    base: Base,
    postgres_server: PostgresCluster,
    tmp_path: Path,
    report: Recorder,
) -> None:
    name, dsn_of, exit_code, says = case
    dsn = dsn_of(postgres_server, base)
    code, message, output = _run_on_copy(base, tmp_path, report, name, "--dsn", dsn)
    assert code == exit_code, message
    for fact in says:
        assert fact in message, message
    for secret in (postgres_server.password, "not-the-password-1234"):
        assert secret not in output


def test_no_connection_string_is_a_usage_error(base: Base, tmp_path: Path, report: Recorder) -> None:
    code, message, _ = _run_on_copy(base, tmp_path, report, "no connection string (no --dsn, no env)")
    assert code == 2, message
    assert "LAGO_POSTGRES_DSN" in message and "--dsn" in message


def test_a_connection_cut_between_two_tables_stops_the_run(
    base: Base, postgres_server: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    """The run's one transaction is its consistent cut: when its connection is cut (here its backend is terminated
    after the first table), the run cannot read the rest from the same cut and stops, naming the endpoint."""
    from ingestion.catalog import load_catalog
    from ingestion.postgres.errors import PostgresAccessError
    from ingestion.readers.base import CaptureContext
    from ingestion.readers.postgres import PostgresReader

    tables = load_catalog().source("loyalty").tables
    reader = PostgresReader(base.dsn)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = reader.read(tables["clientes"], CaptureContext(tmp_path / "a"))
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        cut = admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'lago-mago' "
            "and datname = %s",
            (base.database,),
        ).fetchall()
    with pytest.raises(PostgresAccessError) as error:
        reader.read(tables["produtos"], CaptureContext(tmp_path / "b"))
    reader.close()
    report.record(
        "postgres: the connection cut between two tables of a run",
        runs=1,
        expected=first.expected_rows(),
        note=str(error.value)[:110],
    )
    assert cut == [(True,)]
    assert error.value.endpoint.startswith(f"127.0.0.1:{postgres_server.port}, database {base.database}")
    assert "reading public.produtos failed" in str(error.value)
    assert postgres_server.password not in str(error.value)
