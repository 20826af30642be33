"""Log mode from a real Postgres (logical replication, pgoutput): the initial load from the slot's exported snapshot,
then every committed change as a row of the lake's change files, each version kept, with whole rows also where the
log carries only part of one (unchanged TOASTed values, key-only deletes); a lost slot heals; schema changes,
TRUNCATE and tables without a key are handled as declared.
"""

from __future__ import annotations

import io
import json
import logging
import math
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pgserver import PostgresCluster, drop_slots, fresh_database, simulate_day
from support.cli import ingest, run_cli
from support.dbt import Dbt
from test_postgres_capture import KINDS as SNAPSHOT_KINDS

from ingestion import log_capture
from ingestion.capture import RunOptions
from ingestion.catalog import Source, load_catalog
from ingestion.cdc import change_schema
from ingestion.lake import open_lake
from ingestion.lock import LakeLock
from ingestion.log_capture import log_change_schema, run_log
from ingestion.postgres import spool
from ingestion.postgres.pgoutput import parse_lsn

TABLES = "clientes,produtos"


def log_run(lake: Path | str, dsn: str, *args: str, tables: str = TABLES) -> Any:
    return ingest(
        lake,
        "--source",
        "loyalty",
        "--from",
        "postgres",
        "--mode",
        "log",
        "--tables",
        tables,
        *args,
        env={"LAGO_POSTGRES_DSN": dsn},
    )


def execute(dsn: str, *statements: str) -> None:
    """Each statement in a transaction of its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def files(lake: Path, table: str, kind: str = "*") -> list[Path]:
    return sorted(lake.glob(f"raw/loyalty/{kind}/{table}/*.parquet"))


def changes(lake: Path, table: str, kind: str = "cdc") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in files(lake, table, kind):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def lake_state(lake: Path, table: str, key: str) -> dict[Any, tuple[Any, ...]]:
    """The table as its change log says it is: the latest change of each key, deleted keys left out."""
    listed = ", ".join(f"'{p}'" for p in files(lake, table))
    con = duckdb.connect()
    rows = con.execute(
        f"""select columns(lambda c: not starts_with(c, '_cdc_')) from read_parquet([{listed}], union_by_name = true)
            qualify row_number() over (partition by "{key}" order by _cdc_timestamp desc, _cdc_sequence desc) = 1
                and _cdc_operation <> 'D'"""
    ).fetchall()
    return {row[0]: tuple(row) for row in rows}


def source_state(dsn: str, table: str, key: str) -> dict[Any, tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'select * from public."{table}"').fetchall()  # type: ignore[arg-type]
    return {row[0]: tuple(row) for row in rows}


def state_of(lake: Path, table: str) -> dict[str, Any]:
    return dict(json.loads((lake / "_ingestion" / "loyalty" / table / "state.json").read_text()))


def slots(dsn: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "select slot_name::text, confirmed_flush_lsn::text from pg_replication_slots "
            "where database = current_database()"
        ).fetchall()
    return [(str(name), lsn) for name, lsn in found]


Databases = Callable[[str], str]


@pytest.fixture
def database(postgres_server: PostgresCluster) -> Iterator[Databases]:
    """Makes new databases of the session's cluster; their replication slots are dropped at the end of the test."""
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(fresh_database(postgres_server, prefix))
        return made[-1]

    yield make
    for dsn in made:
        drop_slots(dsn)


@pytest.fixture
def source(database: Databases) -> str:
    """A database at the simulator's day 0 (50 customers)."""
    dsn = database("log")
    written = simulate_day(dsn, "--scale", "50")
    assert written.returncode == 0, written.stderr[-2000:]
    return dsn


def first_key(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute('select "idCliente" from public.clientes order by 1 limit 1').fetchone()
    assert row is not None
    return str(row[0])


def test_every_committed_version_is_captured_in_commit_order(source: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = log_run(lake, source)
    assert first.returncode == 0, first.stderr[-3000:]
    loaded = changes(lake, "clientes", "full-load")
    assert len(loaded) == 50 and {r["_cdc_operation"] for r in loaded} == {"I"}
    assert len(slots(source)) == 1

    key = first_key(source)
    execute(
        source,
        f'update public.clientes set "qtdePontos" = 1 where "idCliente" = \'{key}\'',
        f'update public.clientes set "qtdePontos" = 2 where "idCliente" = \'{key}\'',
        f'update public.clientes set "qtdePontos" = 3 where "idCliente" = \'{key}\'',
        "insert into public.clientes values ('new-1', 1, 0, 0, null, 0, 10, '2024-01-01', '2024-01-01')",
        f"delete from public.clientes where \"idCliente\" = '{key}'",
        'update public.produtos set "DescNomeProduto" = \'renamed\' where "IdProduto" = 1',
    )
    second = log_run(lake, source)
    assert second.returncode == 0, second.stderr[-3000:]
    found = changes(lake, "clientes")
    assert [(r["_cdc_operation"], r["idCliente"], r["qtdePontos"]) for r in found] == [
        ("U", key, 1),
        ("U", key, 2),
        ("U", key, 3),
        ("I", "new-1", 10),
        ("D", key, 3),  # a key-only delete, filled with the key's last row
    ]
    sequences = [r["_cdc_sequence"] for r in found]
    assert sequences == list(range(51, 56))
    times = [r["_cdc_timestamp"] for r in found]
    assert times == sorted(times) and len(set(times)) == 5  # each change at its own commit's time
    lsns = [r["_cdc_lsn"] for r in found]
    assert lsns == sorted(lsns) and len(set(lsns)) == 5  # and its commit's position, below the state's
    assert max(lsns) < parse_lsn(state_of(lake, "clientes")["captures"][-1]["log_position"])
    assert [r["DescNomeProduto"] for r in changes(lake, "produtos")] == ["renamed"]
    for table, key_column in (("clientes", "idCliente"), ("produtos", "IdProduto")):
        assert lake_state(lake, table, key_column) == source_state(source, table, key_column)
    state = state_of(lake, "clientes")
    assert state["captures"][-1]["log_position"] is not None
    assert state["captures"][-1]["snapshot_rows"] == 50

    # nothing new: nothing published, and the slot is confirmed up to where the run stopped
    third = log_run(lake, source)
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(files(lake, "clientes")) == 2
    ((_, confirmed),) = slots(source)
    assert confirmed is not None


def random_text(size: int) -> str:
    rng = random.Random(5)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


def test_unchanged_toast_values_and_key_only_deletes_are_filled_from_the_lake(source: str, tmp_path: Path) -> None:
    """REPLICA IDENTITY DEFAULT: an update that leaves a TOASTed text alone does not resend it, and a delete sends
    only the key; the change files still hold whole rows, from the lake's stored state and from earlier changes of
    the same run."""
    big = random_text(6000)  # random: not compressible below the TOAST threshold (2 kB)
    execute(source, f'update public.produtos set "DescDescricaoProduto" = \'{big}\' where "IdProduto" in (1, 2)')
    lake = tmp_path / "lake"
    assert log_run(lake, source).returncode == 0
    execute(
        source,
        # the key's last row is in the lake's stored state
        'update public.produtos set "DescNomeProduto" = \'one\' where "IdProduto" = 1',
        # ... or in this run's earlier change of it
        f'update public.produtos set "DescDescricaoProduto" = \'{big[::-1]}\' where "IdProduto" = 2',
        'update public.produtos set "DescNomeProduto" = \'two\' where "IdProduto" = 2',
        'delete from public.produtos where "IdProduto" = 2',
    )
    with psycopg.connect(source) as conn:
        identity = conn.execute("select relreplident from pg_class where relname = 'produtos'").fetchone()
    assert identity == ("d",)
    result = log_run(lake, source)
    assert result.returncode == 0, result.stderr[-3000:]
    found = [
        (r["_cdc_operation"], r["IdProduto"], r["DescNomeProduto"], r["DescDescricaoProduto"])
        for r in changes(lake, "produtos")
    ]
    assert found[0] == ("U", 1, "one", big)
    assert found[1][:2] == ("U", 2) and found[1][3] == big[::-1]
    assert found[2][:3] == ("U", 2, "two") and found[2][3] == big[::-1]
    assert found[3][:3] == ("D", 2, "two") and found[3][3] == big[::-1]
    assert len(found) == 4
    assert lake_state(lake, "produtos", "IdProduto") == source_state(source, "produtos", "IdProduto")


def test_a_transaction_spilled_in_parts_keeps_its_fills_and_order(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool's parts carry what is left to fill (unchanged TOASTed values, key-only deletes): a transaction
    spilled every 2 changes publishes the same whole rows, in the same order, as one held in memory."""
    monkeypatch.setattr(spool, "SPILL_CHANGES", 2)
    spilled: list[int] = []
    spill = spool.Spool.spill

    def counted(self: spool.Spool) -> None:
        spilled.append(len(self.operations))
        spill(self)

    monkeypatch.setattr(spool.Spool, "spill", counted)
    big = random_text(6000)
    execute(source, f'update public.produtos set "DescDescricaoProduto" = \'{big}\' where "IdProduto" in (1, 2)')
    loyalty = load_catalog().source("loyalty")
    produtos = loyalty.table("produtos")
    lake = open_lake(str(tmp_path / "lake"))
    with LakeLock(lake) as lock:
        assert run_log(lake, loyalty, [produtos], source, RunOptions(lock=lock))["produtos"] is not None
        with psycopg.connect(source) as conn:  # one transaction, committed when the block ends
            conn.execute('update public.produtos set "DescNomeProduto" = \'one\' where "IdProduto" = 1')
            conn.execute('update public.produtos set "DescNomeProduto" = \'two\' where "IdProduto" = 1')
            conn.execute(f'update public.produtos set "DescDescricaoProduto" = \'{big[::-1]}\' where "IdProduto" = 2')
            conn.execute('update public.produtos set "DescNomeProduto" = \'three\' where "IdProduto" = 2')
            conn.execute('delete from public.produtos where "IdProduto" = 1')
            conn.execute("insert into public.produtos values (999, 'new', 'text', 'cat')")
        record = run_log(lake, loyalty, [produtos], source, RunOptions(lock=lock))["produtos"]
    assert spilled and max(spilled) == 2
    assert record is not None and (record.inserts, record.updates, record.deletes) == (1, 4, 1)
    found = [
        (r["_cdc_operation"], r["IdProduto"], r["DescNomeProduto"], r["DescDescricaoProduto"])
        for r in changes(tmp_path / "lake", "produtos")
    ]
    assert found == [
        ("U", 1, "one", big),
        ("U", 1, "two", big),
        ("U", 2, found[2][2], big[::-1]),
        ("U", 2, "three", big[::-1]),
        ("D", 1, "two", big),
        ("I", 999, "new", "text"),
    ]
    assert lake_state(tmp_path / "lake", "produtos", "IdProduto") == source_state(source, "produtos", "IdProduto")


def test_a_publish_step_out_of_its_memory_cap_is_done_again_within_the_runs_limit(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """DuckDB's memory in a publish is capped below the run's limit; a step that cannot fit in the cap (here a cap
    of 1MB, which a window cannot fit in) is logged and done again within the run's limit, publishing the same."""
    monkeypatch.setattr(log_capture, "PUBLISH_MEMORY_LIMIT", "1MB")
    loyalty = load_catalog().source("loyalty")
    produtos = loyalty.table("produtos")
    lake = open_lake(str(tmp_path / "lake"))
    with LakeLock(lake) as lock:
        assert run_log(lake, loyalty, [produtos], source, RunOptions(lock=lock))["produtos"] is not None
        execute(
            source,
            *(f'update public.produtos set "DescNomeProduto" = \'n{i}\' where "IdProduto" = {i}' for i in (1, 2, 3, 4)),
        )
        with caplog.at_level(logging.WARNING, logger="ingestion.log_capture"):
            record = run_log(lake, loyalty, [produtos], source, RunOptions(lock=lock))["produtos"]
    assert any("a publish step needs more than 1MB of memory: done again within 3GB" in m for m in caplog.messages)
    assert record is not None and (record.inserts, record.updates, record.deletes) == (0, 4, 0)
    found = [
        (r["_cdc_operation"], r["IdProduto"], r["DescNomeProduto"]) for r in changes(tmp_path / "lake", "produtos")
    ]
    assert found == [("U", i, f"n{i}") for i in (1, 2, 3, 4)]
    assert lake_state(tmp_path / "lake", "produtos", "IdProduto") == source_state(source, "produtos", "IdProduto")


@pytest.mark.slow
def test_a_transaction_of_200k_rows_is_published_whole_once(source: str, tmp_path: Path) -> None:
    """A transaction far larger than a spool part (10k changes) and than a batch (100k): spilled to local parts as
    it is decoded, then published whole in one change file, each row once."""
    lake = tmp_path / "lake"
    assert log_run(lake, source, tables="produtos").returncode == 0
    execute(
        source,
        "insert into public.produtos select 1000000 + i, 'n' || i, repeat('d', 50), 'c' "
        "from generate_series(1, 200000) as i",
    )
    result = log_run(lake, source, tables="produtos")
    assert result.returncode == 0, result.stderr[-3000:]
    (published,) = files(lake, "produtos", "cdc")
    con = duckdb.connect()
    counted = con.execute(
        'select count(*), count(distinct "IdProduto"), min(_cdc_operation), max(_cdc_operation), '
        "max(_cdc_sequence) - min(_cdc_sequence) + 1, count(distinct _cdc_lsn) "
        f"from read_parquet('{published}')"
    ).fetchone()
    assert counted == (200_000, 200_000, "I", "I", 200_000, 1)  # one commit: one LSN
    assert state_of(lake, "produtos")["captures"][-1]["inserts"] == 200_000
    # and the next run publishes nothing again
    assert log_run(lake, source, tables="produtos").returncode == 0
    assert files(lake, "produtos", "cdc") == [published]


def test_a_lost_slot_heals_from_a_new_snapshot(source: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert log_run(lake, source).returncode == 0
    ((name, _),) = slots(source)
    key = first_key(source)
    execute(source, f"select pg_drop_replication_slot('{name}')")
    execute(
        source,
        f'update public.clientes set "qtdePontos" = 7 where "idCliente" = \'{key}\'',
        'delete from public.produtos where "IdProduto" = 3',
        "insert into public.clientes values ('new-2', 1, 0, 0, null, 0, 10, '2024-01-01', '2024-01-01')",
    )
    healed = log_run(lake, source)
    assert healed.returncode == 0, healed.stderr[-3000:]
    assert "is gone" in healed.stderr
    assert [name] == [n for n, _ in slots(source)]
    assert sorted((r["_cdc_operation"], r["idCliente"]) for r in changes(lake, "clientes")) == [
        ("I", "new-2"),
        ("U", key),
    ]
    assert [(r["_cdc_operation"], r["IdProduto"]) for r in changes(lake, "produtos")] == [("D", 3)]
    # and the new slot streams on
    execute(source, f'update public.clientes set "qtdePontos" = 8 where "idCliente" = \'{key}\'')
    assert log_run(lake, source).returncode == 0
    for table, key_column in (("clientes", "idCliente"), ("produtos", "IdProduto")):
        assert lake_state(lake, table, key_column) == source_state(source, table, key_column)
    assert len(changes(lake, "clientes")) == 3


def test_an_undeclared_column_is_refused_naming_table_column_and_fix(source: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert log_run(lake, source).returncode == 0
    execute(
        source,
        'update public.produtos set "DescNomeProduto" = \'before\' where "IdProduto" = 1',
        "alter table public.produtos add column weight integer",
        'update public.produtos set weight = 3 where "IdProduto" = 2',
    )
    before = sorted(p.name for p in lake.rglob("*") if p.is_file())
    result = log_run(lake, source)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "table loyalty.produtos: column weight" in result.stderr
    assert "_loyalty__sources.yml" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in lake.rglob("*") if p.is_file()) == before


def test_truncate_is_held_by_the_circuit_breaker(database: Databases, tmp_path: Path) -> None:
    source = database("truncate")
    assert simulate_day(source, "--scale", "120").returncode == 0  # the breaker guards tables of 100 rows or more
    lake = tmp_path / "lake"
    assert log_run(lake, source, tables="clientes").returncode == 0
    execute(source, "truncate public.clientes cascade")
    result = log_run(lake, source, tables="clientes")
    assert result.returncode == 6, result.stderr[-3000:]
    assert "delete 120 of 120 rows" in result.stderr
    assert changes(lake, "clientes") == []
    approved = run_cli("approve", "loyalty.clientes", "--lake", str(lake))
    assert approved.returncode == 0, approved.stderr[-3000:]
    deleted = changes(lake, "clientes")
    assert len(deleted) == 120 and {r["_cdc_operation"] for r in deleted} == {"D"}
    # the approved capture holds the TRUNCATE's position: the next run does not publish it again
    again = log_run(lake, source, tables="clientes")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(changes(lake, "clientes")) == 120
    assert lake_state(lake, "clientes", "idCliente") == {}


def test_a_table_without_a_key_is_refused_by_name(database: Databases, tmp_path: Path) -> None:
    dsn = database("nokey")
    execute(
        dsn,
        'create table public.produtos ("IdProduto" integer, "DescNomeProduto" text, '
        '"DescDescricaoProduto" text, "DescCategoriaProduto" text)',
    )
    lake = tmp_path / "lake"
    result = log_run(lake, dsn, tables="produtos")
    assert result.returncode == 3, result.stderr[-3000:]
    assert "table loyalty.produtos: public.produtos has no primary key nor replica identity" in result.stderr
    assert not lake.exists() or not any(lake.glob("raw/**/*.parquet"))
    assert slots(dsn) == []


def test_bad_credentials_exit_clearly(postgres_server: PostgresCluster, tmp_path: Path) -> None:
    dsn = postgres_server.dsn("postgres", password="wrong-password")
    result = log_run(tmp_path / "lake", dsn, tables="produtos")
    assert result.returncode == 3, result.stderr[-3000:]
    assert "password authentication failed" in result.stderr and "wrong-password" not in result.stderr
    assert "Traceback" not in result.stderr


def test_status_shows_the_slot_lag_and_drop_slot_removes_it(source: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert log_run(lake, source).returncode == 0
    execute(source, 'update public.produtos set "DescNomeProduto" = \'moved\' where "IdProduto" = 1')
    env = {"LAGO_POSTGRES_DSN": source}
    shown = run_cli("status", "--lake", str(lake), "--source", "loyalty", "--json", env=env)
    assert shown.returncode == 0, shown.stderr[-3000:]
    ((slot),) = json.loads(shown.stdout)["slots"]
    assert slot["exists"] and slot["lag_bytes"] > 0 and slot["warning"] is False
    assert slot["lag_warning_bytes"] == 1 << 30 and slot["slot"] == slots(source)[0][0]

    text = run_cli("status", "--lake", str(lake), "--source", "loyalty", "--lag-warning", "0", env=env)
    assert text.returncode == 0, text.stderr[-3000:]
    assert f"slot {slot['slot']}: " in text.stdout and "MiB behind the server" in text.stdout
    assert f"slot {slot['slot']} holds" in text.stderr and "drop-slot --source loyalty" in text.stderr

    dropped = run_cli("drop-slot", "--lake", str(lake), "--source", "loyalty", env=env)
    assert dropped.returncode == 0, dropped.stderr[-3000:]
    assert slots(source) == []
    gone = json.loads(run_cli("status", "--lake", str(lake), "--json", env=env).stdout)["slots"]
    assert [s["exists"] for s in gone] == [False]
    # the next capture takes a new slot and publishes the change made while there was none
    assert log_run(lake, source).returncode == 0
    assert [r["DescNomeProduto"] for r in changes(lake, "produtos")] == ["moved"]


@pytest.mark.dbt
def test_dbt_history_holds_every_committed_version(source: str, tmp_path: Path) -> None:
    """Three updates and a delete of one key between two captures: a snapshot diff would see one change, the log
    sees four, and `dbt build` puts every one of them into the history model."""
    site = Dbt.at(tmp_path)
    lake = Path(site.lake)
    assert log_run(lake, source, tables="clientes,produtos,transacoes,transacao_produto").returncode == 0
    key = first_key(source)
    execute(
        source,
        *(f'update public.clientes set "qtdePontos" = {points} where "idCliente" = \'{key}\'' for points in (7, 8, 9)),
        f"delete from public.clientes where \"idCliente\" = '{key}'",
    )
    assert log_run(lake, source, tables="clientes,produtos,transacoes,transacao_produto").returncode == 0
    site.build("--select", "source:loyalty+", check=True)
    versions = site.query(
        'select "qtdePontos", dbt_is_deleted from history.history_loyalty__clientes where "idCliente" = ? '
        "order by dbt_valid_from, dbt_is_deleted",
        key,
    )
    loaded = versions[0][0]
    assert versions == [(loaded, "False"), (7, "False"), (8, "False"), (9, "False"), (9, "True")]
    (bronze,) = site.query('select count(*) from bronze.bronze_loyalty__clientes where "idCliente" = ?', key)
    assert bronze == (0,)
    # the change files' `_cdc_lsn` (the full loads have none) is left aside like any undeclared column
    logged = changes(lake, "clientes")
    assert len(logged) == 4 and all(r["_cdc_lsn"] > 0 for r in logged)
    (columns,) = site.query(
        "select string_agg(column_name, ',') from information_schema.columns "
        "where table_schema = 'bronze' and table_name = 'bronze_loyalty__clientes'"
    )
    assert "_cdc_lsn" not in str(columns[0]) and "_cdc_sequence" in str(columns[0])


def test_a_table_joins_a_followed_source_and_a_subset_run_is_refused(source: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert log_run(lake, source, tables="clientes").returncode == 0
    key = first_key(source)
    execute(
        source,
        f'update public.clientes set "qtdePontos" = 1 where "idCliente" = \'{key}\'',
        f'update public.clientes set "qtdePontos" = 2 where "idCliente" = \'{key}\'',
    )
    joined = log_run(lake, source)  # produtos joins: loaded from a new slot's snapshot
    assert joined.returncode == 0, joined.stderr[-3000:]
    # the versions the old slot held for clientes were published before it was replaced
    assert [(r["_cdc_operation"], r["qtdePontos"]) for r in changes(lake, "clientes")] == [("U", 1), ("U", 2)]
    assert len(changes(lake, "produtos", "full-load")) == len(source_state(source, "produtos", "IdProduto"))

    before = sorted(p.name for p in lake.rglob("*") if p.is_file())
    subset = log_run(lake, source, tables="clientes")
    assert subset.returncode == 2, subset.stderr[-3000:]
    assert "also follows public.produtos" in subset.stderr
    assert sorted(p.name for p in lake.rglob("*") if p.is_file()) == before


@pytest.mark.s3
def test_log_mode_into_an_s3_lake(source: str, s3_lake_env: str, request: pytest.FixtureRequest) -> None:
    """The same capture into S3: the stored state the fill reads is streamed from the bucket."""
    big = random_text(4000)
    execute(source, f'update public.produtos set "DescDescricaoProduto" = \'{big}\' where "IdProduto" = 1')
    lake = s3_lake_env
    assert log_run(lake, source).returncode == 0
    execute(
        source,
        'update public.produtos set "DescNomeProduto" = \'x\' where "IdProduto" = 1',
        'update public.produtos set "DescNomeProduto" = \'y\' where "IdProduto" = 1',
        'delete from public.produtos where "IdProduto" = 1',
    )
    result = log_run(lake, source)
    assert result.returncode == 0, result.stderr[-3000:]
    client = request.getfixturevalue("seaweedfs").client()
    bucket, _, prefix = lake.removeprefix("s3://").partition("/")
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/raw/loyalty/cdc/produtos/")
    ((key),) = [o["Key"] for o in listed["Contents"]]
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    rows = pq.read_table(io.BytesIO(body)).to_pylist()
    assert [(r["_cdc_operation"], r["DescNomeProduto"], r["DescDescricaoProduto"]) for r in rows] == [
        ("U", "x", big),
        ("U", "y", big),
        ("D", "y", big),
    ]


# -- every declared type, through the log exactly as through COPY ----------------------------------------------------

# the snapshot reader's table of every declared type, followed through the log instead
KINDS = replace(SNAPSHOT_KINDS, database_mode="log")

KINDS_DDL = """
create schema sales;
create type colour as enum ('red', 'green');
create table sales.all_kinds (
    Id smallint primary key, label varchar(40), big integer, ratio real, flag boolean, day date, at timestamp(3),
    at_zoned timestamptz, amount numeric(12,2), code colour
);
"""

KINDS_ROWS = """
insert into sales.all_kinds values
    ({0} + 1, '', 2147483647, 0.5, true, '2024-02-29', '2024-01-01 10:00:00.123', '2024-01-01 10:00:00-03:00',
     12.34, 'red'),
    ({0} + 2, null, null, null, null, null, null, null, null, null),
    ({0} + 3, E'a "quoted", comma;\\nnew line, ção', -2147483648, 'NaN', false, '0001-01-01',
     '1999-12-31 23:59:59.999', '2000-01-01 00:00:00.000001+00', -0.01, 'green'),
    ({0} + 4, '\\N', 0, '-Infinity', null, '9999-12-31', null, null, 9999999999.99, null),
    -- a real that is not exact in single precision: widened to a double as COPY widens it (0.10000000149011612)
    ({0} + 5, 'x', 1, 0.1, null, null, null, null, null, null)
"""


def test_every_declared_type_reads_the_same_from_the_log_as_from_copy(database: Databases, tmp_path: Path) -> None:
    dsn = database("kinds")
    execute(dsn, KINDS_DDL, KINDS_ROWS.format(0))
    lake = open_lake(str(tmp_path / "lake"))
    source = Source("shop", "snapshot", {"kinds": KINDS})
    with LakeLock(lake) as lock:
        loaded = run_log(lake, source, [KINDS], dsn, RunOptions(lock=lock))["kinds"]
        execute(dsn, KINDS_ROWS.format(10))  # the same values again, now read from the log
        logged = run_log(lake, source, [KINDS], dsn, RunOptions(lock=lock))["kinds"]
    assert loaded is not None and loaded.kind == "full-load" and loaded.inserts == 5
    assert logged is not None and logged.kind == "cdc" and logged.inserts == 5

    def rows(key: str | None, schema: pa.Schema) -> dict[int, dict[str, Any]]:
        assert key is not None
        data = pq.read_table(tmp_path / "lake" / key)
        assert data.schema.remove_metadata() == schema
        return {
            r["Id"] % 10: {k: v for k, v in r.items() if not k.startswith("_cdc")} | {"Id": 0} for r in data.to_pylist()
        }

    # a change file from the log adds the commit's LSN as its last column
    copied, streamed = rows(loaded.data_key, change_schema(KINDS)), rows(logged.data_key, log_change_schema(KINDS))
    assert math.isnan(copied[3].pop("ratio")) and math.isnan(streamed[3].pop("ratio"))
    assert streamed == copied
    assert copied[1]["at_zoned"] == datetime(2024, 1, 1, 13, 0, 0) and copied[1]["amount"] == Decimal("12.34")
    assert copied[5]["ratio"] == 0.10000000149011612


def test_a_truncate_among_changes_of_one_run_cuts_them_in_order(source: str, tmp_path: Path) -> None:
    """Changes before a TRUNCATE, the TRUNCATE (a delete of every row then alive, in key order) and changes after
    it, all in one run: each in commit order, a key-only delete after it filled from the changes after it."""
    lake = tmp_path / "lake"
    assert log_run(lake, source, tables="produtos").returncode == 0
    execute(
        source,
        'update public.produtos set "DescNomeProduto" = \'before\' where "IdProduto" = 1',
        "insert into public.produtos values (999, 'new', 'text', 'cat')",
    )
    alive = sorted(source_state(source, "produtos", "IdProduto"))
    execute(
        source,
        "truncate public.produtos cascade",
        "insert into public.produtos values (1, 'again', 'text', 'cat')",
        'update public.produtos set "DescNomeProduto" = \'after\' where "IdProduto" = 1',
        'delete from public.produtos where "IdProduto" = 1',  # carries the key only
        "insert into public.produtos values (2, 'last', 'text', 'cat')",
    )
    result = log_run(lake, source, tables="produtos")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = changes(lake, "produtos")
    found = [(r["_cdc_operation"], r["IdProduto"], r["DescNomeProduto"]) for r in rows]
    assert found[:2] == [("U", 1, "before"), ("I", 999, "new")]
    assert [(op, key) for op, key, _ in found[2 : 2 + len(alive)]] == [("D", key) for key in alive]
    assert found[2 + len(alive) :] == [("I", 1, "again"), ("U", 1, "after"), ("D", 1, "after"), ("I", 2, "last")]
    assert rows[-2]["DescDescricaoProduto"] == "text" and rows[-2]["DescCategoriaProduto"] == "cat"
    # the full load held every row but 999: the change file's sequences follow on, one each
    assert [r["_cdc_sequence"] for r in rows] == list(range(len(alive), len(alive) + len(rows)))
    assert lake_state(lake, "produtos", "IdProduto") == source_state(source, "produtos", "IdProduto")
