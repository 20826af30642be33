"""Cursor mode end to end, as a user declares it: the loyalty tables with a cursor column captured in cursor mode
(the others in snapshot mode, in the same run and the same cut) from a database that follows the simulator for
three days; dbt builds Bronze from those captures with each table's rows equal to the database's, and `verify`
finds every table equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import yaml
from pgserver import PostgresCluster, fresh_database, simulate_day
from support.cli import ingest, run_cli
from support.dbt import Dbt, copy_project

# the columns the simulator moves on every insert and update of their rows (text times, which sort as times)
CURSORS = {"clientes": "DtAtualizacao", "transacoes": "DtCriacao"}


def declare_cursors(project: Path) -> None:
    path = project / "models" / "bronze" / "loyalty" / "_loyalty__sources.yml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for table in document["sources"][0]["tables"]:
        if table["name"] in CURSORS:
            table["meta"] |= {"database_mode": "cursor", "cursor_column": CURSORS[table["name"]]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


@pytest.mark.dbt
def test_cursor_captures_build_with_dbt(tmp_path: Path, postgres_server: PostgresCluster) -> None:
    project = copy_project(tmp_path / "project")
    declare_cursors(project)
    site = Dbt.at(tmp_path / "dbt", tmp_path / "lake", project=project)
    dsn = fresh_database(postgres_server, "cursor_dbt")
    env = {"LAGO_PROJECT_DIR": str(project), "LAGO_POSTGRES_DSN": dsn}
    for _ in range(3):
        written = simulate_day(dsn, "--scale", "300")
        assert written.returncode == 0, written.stderr[-2000:]
        ingest(site.lake, "--source", "loyalty", "--from", "postgres", env=env, check=True)

    for name, column in CURSORS.items():
        state = json.loads(Path(site.lake, "_ingestion", "loyalty", name, "state.json").read_text())
        kinds = [c["kind"] for c in state["captures"]]
        window = state["captures"][-1]["reader_state"]
        assert kinds[0] == "full-load" and window["kind"] == "cursor" and window["column"] == column
        assert window["mark"] is not None  # the third capture read a window, not the whole table
    assert (
        json.loads(Path(site.lake, "_ingestion/loyalty/produtos/state.json").read_text())["captures"][-1].get(
            "reader_state"
        )
        is None
    )  # a snapshot table of the same run

    site.build("--select", "source:loyalty+", check=True)
    with psycopg.connect(dsn) as conn:
        expected = {
            name: int(str(conn.execute(f'select count(*) from public."{name}"').fetchone()[0]))  # type: ignore[index]
            for name in ("clientes", "produtos", "transacoes", "transacao_produto")
        }
    assert expected["clientes"] > 300  # the database holds the third day's customers
    with site.connect() as con:
        for name, rows in expected.items():
            (found,) = con.execute(f"select count(*) from bronze.bronze_loyalty__{name}").fetchall()[0]
            assert found == rows, name

    tables = [f"loyalty.{name}" for name in expected]
    receipt = run_cli("verify", *tables, "--lake", site.lake, env=env)
    assert receipt.returncode == 0, receipt.stdout + receipt.stderr[-2000:]
    for name, rows in expected.items():
        assert f"loyalty.{name}: equal, {rows} rows" in receipt.stdout
