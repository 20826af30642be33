"""Relationship tests are errors where both tables come from one consistent cut of a database, warnings otherwise.

A Postgres database follows the simulator for three days and is captured in snapshot mode after each: every
capture record names the run's cut, the same for every table of a run. One build of that lake passes with the
enforced relationships checked as errors on every row. Then an orphan transaction (its customer absent) and an
orphan product line (its transaction absent) are written into the database, and the story goes on in the same
lake and warehouse, one build per step:
- `transacoes` alone is captured: the customers' state is an older capture's, so the orphan transaction only warns;
- every table is captured: both sides of both relationships are now one cut, and the build fails on both tests;
- the lake turns to log mode (the slot's initial load, then one transaction adding a customer and a transaction
  of theirs): both sides of the customer relationship are then at the same log position, an error if orphaned,
  while the product lines' table changed in no batch since and keeps an older cut, so its orphan warns again;
- the same database exported as CSV files and captured into a lake of its own: a file source has no cut, so both
  orphans only warn and the build passes.
A cursor capture that did not scan the keys records no cut (it has not looked for deletes).
The simulator's own relationships are checked in the database itself, where the tests' errors would fire on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pgserver import PostgresCluster, drop_slots, fresh_database, simulate_day
from psycopg import sql
from support.cli import csv_args, ingest
from support.dbt import Dbt, copy_project

from ingestion.catalog import load_catalog

TABLES = ("clientes", "produtos", "transacoes", "transacao_produto")
# the tests of models/silver/loyalty/_loyalty__models.yml, by node name
CUSTOMER = (
    "enforced_relationships_silver_loyalty__transactions_customer_id__customer_id__ref_silver_loyalty__customers_"
)
LINE = (
    "enforced_relationships_silver_loyalty__transaction_products_transaction_id__transaction_id__"
    "ref_silver_loyalty__transactions_"
)
PRODUCT = "relationships_silver_loyalty__transaction_products_product_id__product_id__ref_silver_loyalty__products_"
# Silver and what it is built from, with the tests whose parents are all built (Gold's are left out)
SELECT = ("--select", "+path:models/silver/loyalty", "--indirect-selection", "buildable")
SCALE = "300"

# the source's relationships, as orphan counts in the database (child column -> parent column)
ORPHANS = {
    CUSTOMER: "select count(*) from transacoes as t where not exists "
    '(select 1 from clientes as c where c."idCliente" = t."IdCliente")',
    LINE: "select count(*) from transacao_produto as p where not exists "
    '(select 1 from transacoes as t where t."IdTransacao" = p."IdTransacao")',
    PRODUCT: "select count(*) from transacao_produto as p where not exists "
    '(select 1 from produtos as x where x."IdProduto"::text = p."IdProduto"::text)',
}
ORPHAN_TRANSACTION = "00000000-0000-0000-0000-0000000000a1"
ORPHAN_LINE = "00000000-0000-0000-0000-0000000000b1"
ABSENT = "00000000-0000-0000-0000-0000000000ff"
NEW_CUSTOMER = "00000000-0000-0000-0000-0000000000c1"
NEW_TRANSACTION = "00000000-0000-0000-0000-0000000000a2"


@dataclass(frozen=True)
class Build:
    returncode: int
    output: str
    # node name -> its result in run_results.json
    results: dict[str, dict[str, Any]]
    # node name -> its compiled SQL, for the relationship tests
    compiled: dict[str, str]


@dataclass(frozen=True)
class Story:
    dsn: str
    lake: Path
    # the database after the simulator's three days: rows per table, orphans per relationship
    rows: dict[str, int]
    orphans: dict[str, int]
    # the rows the enforced tests read in the clean build (Silver's rows of that build)
    checked: dict[str, int]
    cuts: dict[str, list[str | None]]
    clean: Build
    one_table: Build
    every_table: Build
    log: Build
    files: Build


def build(site: Dbt) -> Build:
    done = site.build(*SELECT)
    results = {r["unique_id"].split(".")[2]: r for r in site.artifact("run_results.json")["results"]}
    compiled = {name: str(results[name].get("compiled_code") or "") for name in (CUSTOMER, LINE, PRODUCT)}
    return Build(done.returncode, done.stdout, results, compiled)


def counts(dsn: str, queries: dict[str, str]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {name: int(str(conn.execute(query).fetchone()[0])) for name, query in queries.items()}  # type: ignore[index]


def cuts_of(lake: Path) -> dict[str, list[str | None]]:
    """Each table's capture records' cuts, oldest first (a log mode capture's is its log position)."""
    found = {}
    for name in TABLES:
        state = json.loads((lake / "_ingestion" / "loyalty" / name / "state.json").read_text(encoding="utf-8"))
        found[name] = [
            c.get("cut") or (c.get("log_position") and f"log:{c['log_position']}") for c in state["captures"]
        ]
    return found


def export_csv(dsn: str, folder: Path) -> None:
    """Every table of the database as the CSV extract a user would hand the csv reader (declared names and
    separator; NULL an empty field, an empty text a quoted one, as Postgres's CSV writes them)."""
    folder.mkdir(parents=True)
    source = load_catalog().source("loyalty")
    with psycopg.connect(dsn) as conn:
        for name in TABLES:
            table = source.tables[name]
            query = sql.SQL("copy (select {} from public.{}) to stdout (format csv, header, delimiter {})").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names),
                sql.Identifier(name),
                sql.Literal(table.csv_separator),
            )
            with (folder / f"{name}.csv").open("wb") as out, conn.cursor().copy(query) as copy:
                for block in copy:
                    out.write(block)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresCluster) -> Iterator[Story]:
    dsn = fresh_database(postgres_server, "cut")
    try:
        yield tell(tmp_path_factory.mktemp("cut"), dsn)
    finally:
        drop_slots(dsn)  # log mode's: the session's cluster has room for a few only


def tell(work: Path, dsn: str) -> Story:
    """The module's story, step by step (see the docstring)."""
    site = Dbt.at(work / "database")
    lake = Path(site.lake)
    env = {"LAGO_POSTGRES_DSN": dsn}
    for _ in range(3):
        written = simulate_day(dsn, "--scale", SCALE)
        assert written.returncode == 0, written.stderr[-2000:]
        ingest(lake, "--source", "loyalty", "--from", "postgres", env=env, check=True)
    rows = counts(dsn, {name: f'select count(*) from public."{name}"' for name in TABLES})
    orphans = counts(dsn, ORPHANS)

    clean = build(site)
    with site.connect() as con:
        checked = {
            CUSTOMER: con.execute(
                "select count(*) from silver.silver_loyalty__transactions where _loaded_at = "
                "(select max(_loaded_at) from silver.silver_loyalty__transactions)"
            ).fetchall()[0][0],
            LINE: con.execute(
                "select count(*) from silver.silver_loyalty__transaction_products where _loaded_at = "
                "(select max(_loaded_at) from silver.silver_loyalty__transaction_products)"
            ).fetchall()[0][0],
        }

    with psycopg.connect(dsn) as conn:  # one transaction: both orphans are in every cut after it
        conn.execute(
            'insert into transacoes select %s, %s, "DtCriacao", "QtdePontos", "DescSistemaOrigem" '
            "from transacoes limit 1",
            (ORPHAN_TRANSACTION, ABSENT),
        )
        conn.execute(
            'insert into transacao_produto select %s, %s, "IdProduto", "QtdeProduto", "vlProduto" '
            "from transacao_produto limit 1",
            (ORPHAN_LINE, ABSENT),
        )
    ingest(lake, "--source", "loyalty", "--from", "postgres", "--tables", "transacoes", env=env, check=True)
    one_table = build(site)
    ingest(lake, "--source", "loyalty", "--from", "postgres", env=env, check=True)
    every_table = build(site)

    ingest(lake, "--source", "loyalty", "--from", "postgres", "--mode", "log", env=env, check=True)
    with psycopg.connect(dsn) as conn:  # one transaction: one batch of the log, at one position
        conn.execute(
            'insert into clientes select %s, "flEmail", "flTwitch", "flYouTube", "flBlueSky", '
            '"flInstagram", "qtdePontos", "DtCriacao", "DtAtualizacao" from clientes limit 1',
            (NEW_CUSTOMER,),
        )
        conn.execute(
            'insert into transacoes select %s, %s, "DtCriacao", "QtdePontos", "DescSistemaOrigem" '
            "from transacoes limit 1",
            (NEW_TRANSACTION, NEW_CUSTOMER),
        )
    ingest(lake, "--source", "loyalty", "--from", "postgres", "--mode", "log", env=env, check=True)
    log = build(site)

    extracts = work / "extracts"
    export_csv(dsn, extracts)
    files_site = Dbt.at(work / "files")
    ingest(files_site.lake, *csv_args(extracts), check=True)
    files = build(files_site)
    return Story(dsn, lake, rows, orphans, checked, cuts_of(lake), clean, one_table, every_table, log, files)


@pytest.mark.dbt
def test_the_simulator_keeps_every_relationship_in_the_database(story: Story) -> None:
    # the database after three simulated days: what an error would fire on if the simulator wrote orphans
    assert story.rows["clientes"] > int(SCALE) and story.rows["transacoes"] == story.rows["transacao_produto"] > 100
    assert story.orphans == {CUSTOMER: 0, LINE: 0, PRODUCT: 0}


@pytest.mark.dbt
def test_every_table_of_a_run_records_the_runs_cut(story: Story) -> None:
    runs = [story.cuts[name][:3] for name in TABLES]
    assert all(run == runs[0] for run in runs)  # one run, one cut for every table
    assert len(set(runs[0])) == 3 and all(str(cut).startswith("postgres:") for cut in runs[0])
    # the run that read `transacoes` alone, after the orphans were written, then the run that read every table
    assert [len(story.cuts[name][:-2]) for name in ("clientes", "transacoes")] == [4, 5]
    last = {story.cuts[name][4 if name == "transacoes" else 3] for name in TABLES}
    assert len(last) == 1 and story.cuts["transacoes"][3] not in runs[0]
    # (the two runs' snapshots are equal when nothing at all was committed between them: one state of the
    # database either way, so the test does not depend on it)


@pytest.mark.dbt
def test_a_clean_database_lake_passes_with_both_relationships_checked_as_errors(story: Story) -> None:
    assert story.clean.returncode == 0, story.clean.output[-5000:]
    for name in (CUSTOMER, LINE):
        result = story.clean.results[name]
        assert (result["status"], result["failures"]) == ("pass", 0)
        # the build's rows, each checked as an error: both sides are the third run's cut
        assert "1 as from_one_cut" in story.clean.compiled[name]
        assert f"one consistent cut of the source: {story.cuts['clientes'][2]}" in story.clean.compiled[name]
    assert story.checked == {CUSTOMER: story.rows["transacoes"], LINE: story.rows["transacao_produto"]}
    assert story.clean.results[PRODUCT]["status"] == "pass"


@pytest.mark.dbt
def test_an_orphan_whose_parent_table_is_an_older_capture_only_warns(story: Story) -> None:
    assert story.one_table.returncode == 0, story.one_table.output[-5000:]
    customer = story.one_table.results[CUSTOMER]
    assert (customer["status"], customer["failures"]) == ("warn", 1)
    assert customer["message"] == "Got 1 result, configured to warn if != 0"
    assert "0 as from_one_cut" in story.one_table.compiled[CUSTOMER]
    # the orphan line's table was not captured: nothing to find yet
    assert story.one_table.results[LINE]["status"] == "pass"


@pytest.mark.dbt
def test_an_orphan_in_one_cut_fails_the_build_naming_the_test(story: Story) -> None:
    assert story.every_table.returncode == 1
    for name in (CUSTOMER, LINE):
        result = story.every_table.results[name]
        assert (result["status"], result["failures"]) == ("fail", 1)
        assert result["message"] == "Got 1 result, configured to fail if != 0 and max(from_one_cut) = 1"
        assert f"Failure in test {name}" in story.every_table.output
        assert f"one consistent cut of the source: {story.cuts['clientes'][3]}" in story.every_table.compiled[name]
    assert story.every_table.results[PRODUCT]["status"] == "pass"


@pytest.mark.dbt
def test_log_mode_names_its_cut_by_log_position(story: Story) -> None:
    # the slot's initial load: every table at its position; then the batch that changed two of them
    loaded = {story.cuts[name][-2 if name in ("clientes", "transacoes") else -1] for name in TABLES}
    assert len(loaded) == 1 and str(loaded.pop()).startswith("log:")
    batch = story.cuts["clientes"][-1]
    assert batch == story.cuts["transacoes"][-1] and str(batch).startswith("log:")
    assert story.log.returncode == 0, story.log.output[-5000:]
    customer = story.log.results[CUSTOMER]
    assert (customer["status"], customer["failures"]) == ("pass", 0)
    assert f"one consistent cut of the source: {batch}" in story.log.compiled[CUSTOMER]
    # the product lines' table is at the load's position, their transactions at the batch's: the orphan line warns
    line = story.log.results[LINE]
    assert (line["status"], line["failures"]) == ("warn", 1)
    assert "0 as from_one_cut" in story.log.compiled[LINE]


@pytest.mark.dbt
def test_the_same_orphans_from_files_only_warn(story: Story) -> None:
    assert story.files.returncode == 0, story.files.output[-5000:]
    for name in (CUSTOMER, LINE):
        result = story.files.results[name]
        assert (result["status"], result["failures"]) == ("warn", 1)
        assert "0 as from_one_cut" in story.files.compiled[name]
    assert story.files.results[PRODUCT]["status"] == "pass"


def test_a_cursor_capture_without_its_key_scan_names_no_cut(tmp_path: Path, postgres_server: PostgresCluster) -> None:
    # clientes in cursor mode, its keys scanned every second capture: the capture between has not looked for
    # deletes, so its state may still hold rows the database deleted, and it is no state of the run's cut
    project = copy_project(tmp_path / "project")
    path = project / "models" / "bronze" / "loyalty" / "_loyalty__sources.yml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for table in document["sources"][0]["tables"]:
        if table["name"] == "clientes":
            table["meta"] |= {"database_mode": "cursor", "cursor_column": "DtAtualizacao", "cursor_key_scan": 2}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    dsn = fresh_database(postgres_server, "cut_cursor")
    assert simulate_day(dsn, "--scale", "50").returncode == 0
    env = {"LAGO_PROJECT_DIR": str(project), "LAGO_POSTGRES_DSN": dsn}
    lake = tmp_path / "lake"
    for _ in range(3):
        ingest(lake, "--source", "loyalty", "--from", "postgres", "--tables", "clientes,produtos", env=env, check=True)

    records = {
        name: json.loads((lake / "_ingestion" / "loyalty" / name / "state.json").read_text(encoding="utf-8"))[
            "captures"
        ]
        for name in ("clientes", "produtos")
    }
    windows = [
        (r["reader_state"]["mark"] is not None, r["reader_state"]["since_key_scan"]) for r in records["clientes"]
    ]
    assert windows == [(True, 0), (True, 1), (True, 0)]  # whole, a window without the key scan, one with it
    cursor = [r.get("cut") for r in records["clientes"]]
    snapshot = [r.get("cut") for r in records["produtos"]]
    assert cursor == [snapshot[0], None, snapshot[2]] and None not in snapshot
