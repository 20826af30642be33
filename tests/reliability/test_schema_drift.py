"""Schema drift: a column declared in the sources YAML after some captures (docs/dbt.md, "Schema drift").

It flows into Bronze, the snapshot and, once the Silver model selects it, Silver, and nothing loses history:
rows captured before keep their values with the new column NULL, the snapshot keeps every version, and a
`--full-refresh` over files with and without the column rebuilds the same tables.

Runs on a copy of the dbt project (its sources YAML and a Silver model are edited), capturing with the CLI
pointed at the copy (LAGO_PROJECT_DIR), so the capture reads the copy's declaration.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable
from reliability_support import ROOT, History, Recorder, compare, relation_rows, snapshot_truth, warehouse_state
from support.cli import csv_args, ingest
from support.dbt import Dbt, copy_project

from ingestion.catalog import Table, load_catalog
from ingestion.duck import quote_identifier
from ingestion.published_tables import PublishedTables

pytestmark = pytest.mark.dbt

SOURCES_YAML = Path("models/bronze/loyalty/_loyalty__sources.yml")
SILVER_MODEL = Path("models/silver/loyalty/silver_loyalty__customers.sql")
NEW_COLUMN = {"name": "flTikTok", "data_type": "integer", "description": "1 when the customer linked TikTok."}
NEW = quote_identifier(NEW_COLUMN["name"])
# Only tests whose parents are all selected (not the relationship tests to other Silver tables), and no unit tests:
# Silver's gives Bronze rows as SQL, without the new column (a real change would add it there).
ONLY_SELECTED_TESTS = ("--indirect-selection", "cautious", "--exclude", "test_type:unit")
BUILD = (
    "--select",
    "bronze_loyalty__clientes",
    "history_loyalty__clientes",
    "silver_loyalty__customers",
    *ONLY_SELECTED_TESTS,
)
BRONZE = "bronze.bronze_loyalty__clientes"
SILVER = "silver.silver_loyalty__customers"
SNAPSHOT = "history.history_loyalty__clientes"


def assert_published_equals_warehouse(site: Dbt, relation: str) -> None:
    """The table's Delta publication in the lake (macros/publish/publish_to_lake.sql) holds the warehouse's columns
    and rows."""
    schema, table = relation.split(".")
    tables = PublishedTables(site.lake)
    rows = DeltaTable(tables.location(schema, table), storage_options=tables.storage_options()).to_pyarrow_table()
    with site.connect() as con:
        columns = [str(row[0]) for row in con.execute(f"select * from {relation} limit 0").description or []]
        assert sorted(rows.column_names) == sorted(columns), (rows.column_names, columns)
        con.register("published", rows)
        listed = ", ".join(quote_identifier(column) for column in columns)
        (missing, extra), *_ = con.execute(
            f"""select
                (select count(*) from (select {listed} from {relation} except all select {listed} from published)),
                (select count(*) from (select {listed} from published except all select {listed} from {relation}))"""
        ).fetchall()
    assert (missing, extra) == (0, 0), f"{relation}: {missing} rows not published, {extra} published extra"


def clientes(project: Path) -> Table:
    return load_catalog([project / SOURCES_YAML]).source("loyalty").tables["clientes"]


def declare_new_column(project: Path) -> None:
    path = project / SOURCES_YAML
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    (table,) = (t for s in document["sources"] for t in s["tables"] if t["name"] == "clientes")
    table["columns"].append(dict(NEW_COLUMN))
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")


def select_new_column_in_silver(project: Path) -> None:
    path = project / SILVER_MODEL
    sql = path.read_text(encoding="utf-8")
    edits = [
        (
            "{{ lago_mago.flag_to_boolean('flInstagram') }} as has_instagram,",
            "{{ lago_mago.flag_to_boolean('flInstagram') }} as has_instagram,\n"
            "        {{ lago_mago.flag_to_boolean('flTikTok') }} as has_tiktok,",
        ),
        (
            "        has_instagram,\n        created_at,",
            "        has_instagram,\n        has_tiktok,\n        created_at,",
        ),
    ]
    for old, new in edits:
        assert sql.count(old) == 1, f"{SILVER_MODEL} changed; update this test's edit of it"
        sql = sql.replace(old, new)
    path.write_text(sql, encoding="utf-8")


def with_new_column(folder: Path, dest: Path) -> Path:
    """The folder's clientes.csv with the new column: 1, 0 or empty (NULL) by turns."""
    lines = (folder / "clientes.csv").read_text(encoding="utf-8").splitlines()
    rows = [f"{line};{('1', '0', '')[number % 3]}" for number, line in enumerate(lines[1:])]
    dest.mkdir(parents=True)
    (dest / "clientes.csv").write_text("\n".join([f"{lines[0]};{NEW_COLUMN['name']}", *rows]) + "\n", "utf-8")
    return dest


def capture(lake: Path, project: Path, folder: Path) -> None:
    """A capture of clientes with the declaration of the project copy `project`."""
    ingest(lake, *csv_args(folder, "clientes"), env={"LAGO_PROJECT_DIR": str(project)}, check=True)


@dataclass(frozen=True)
class Captured:
    how: str
    truth: str  # the captured source state, as a relation


def capture_with_new_column(lake: Path, project: Path, folder: Path, workdir: Path) -> Captured:
    """The first capture after the column was declared: the previous snapshot reads the column as NULL."""
    capture(lake, project, folder)
    return Captured("captured by ingestion", snapshot_truth(lake, clientes(project)))


def rows_without_load_time(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[object, ...]]:
    """Every row of `relation` but its `_loaded_at` (a rebuild loads again), sorted. Columns go by name: an appended
    column is last, a rebuilt table has it where the model selects it."""
    columns = sorted(row[0] for row in con.execute(f"describe {relation}").fetchall() if row[0] != "_loaded_at")
    return sorted(relation_rows(con, relation, columns).elements(), key=repr)


@pytest.fixture
def site(tmp_path: Path) -> Dbt:
    return Dbt.at(tmp_path / "dbt", tmp_path / "lake", project=copy_project(tmp_path / "project"))


def test_a_column_declared_after_captures_flows_into_bronze_silver_and_the_snapshot(
    site: Dbt, history: History, tmp_path: Path, report: Recorder
) -> None:
    lake, project = tmp_path / "lake", site.project
    old = clientes(project)
    history_columns = [*old.column_names, "dbt_scd_id", "dbt_valid_from", "dbt_is_deleted"]
    capture(lake, project, history.folders[0])
    site.build(*BUILD, check=True)
    capture(lake, project, history.folders[1])

    # 1. Declared while the files to merge were all written without it: NULL in every row, nothing else changes.
    declare_new_column(project)
    site.build(*BUILD, check=True)
    with site.connect() as con:
        result = compare(
            relation_rows(con, snapshot_truth(lake, old), old.column_names),
            relation_rows(con, BRONZE, old.column_names),
        )
        (bronze_rows, with_value), *_ = con.execute(f"select count(*), count({NEW}) from {BRONZE}").fetchall()
        (silver_rows,) = con.execute(f"select count(*) from {SILVER}").fetchone() or (0,)
        (snapshot_values,) = con.execute(f"select count({NEW}) from {SNAPSHOT}").fetchone() or (-1,)
        versions = relation_rows(con, SNAPSHOT, history_columns)
    report.record(
        "dbt schema drift: a column declared, the files to merge all without it",
        runs=1,
        expected=result.expected,
        lost=result.lost,
        duplicated=result.duplicated,
        note=f"Bronze: {with_value} of {bronze_rows} rows with a value; Silver {silver_rows} rows; "
        f"snapshot {sum(versions.values())} versions",
    )
    assert result.exact, result
    assert (with_value, silver_rows, snapshot_values) == (0, bronze_rows, 0)

    # 2. The first capture with the column, and Silver selecting it.
    new = clientes(project)
    captured = capture_with_new_column(
        lake, project, with_new_column(history.folders[2], tmp_path / "v2"), tmp_path / "work"
    )
    select_new_column_in_silver(project)
    site.build(*BUILD, check=True)
    with site.connect() as con:
        result = compare(
            relation_rows(con, captured.truth, new.column_names), relation_rows(con, BRONZE, new.column_names)
        )
        (with_value,) = con.execute(f"select count({NEW}) from {BRONZE}").fetchone() or (0,)
        (silver_differs,) = con.execute(
            f"""select count(*) from {SILVER} as silver
            full outer join {BRONZE} as bronze on silver.customer_id = trim(bronze."idCliente")
            where silver.customer_id is null or bronze."idCliente" is null
                or silver.has_tiktok is distinct from (case bronze.{NEW} when 1 then true when 0 then false end)"""
        ).fetchone() or (-1,)
        kept = versions - relation_rows(con, SNAPSHOT, history_columns)
        (old_with_value,) = con.execute(
            f"select count(*) from {SNAPSHOT} where {NEW} is not null and dbt_valid_from < "
            f"(select min(_cdc_timestamp) from {BRONZE} where {NEW} is not null)"
        ).fetchone() or (-1,)
        current = relation_rows(
            con, f"{SNAPSHOT} where dbt_valid_to is null and dbt_is_deleted = 'False'", new.column_names
        )
        bronze = relation_rows(con, BRONZE, new.column_names)
    report.record(
        "dbt schema drift: the first capture with the column → Bronze, Silver, snapshot",
        runs=1,
        expected=result.expected,
        lost=result.lost,
        duplicated=result.duplicated,
        note=f"{captured.how}; Bronze {with_value} rows with a value; Silver rows differing from Bronze: "
        f"{silver_differs}; earlier versions lost: {sum(kept.values())}",
    )
    assert result.exact, result
    assert with_value > 0 and silver_differs == 0
    assert not kept, f"the snapshot lost versions: {kept}"
    assert old_with_value == 0, "a version captured before the column existed has a value in it"
    assert current == bronze
    # Silver's publication in the lake gained the column with its changes (earlier rows NULL, as in the warehouse)
    assert_published_equals_warehouse(site, SILVER)

    # 3. A rebuild over files with and without the column gives the same tables.
    with site.connect() as con:
        before = {relation: rows_without_load_time(con, relation) for relation in (BRONZE, SILVER)}
    site.build(
        "--full-refresh",
        "--select",
        "bronze_loyalty__clientes",
        "silver_loyalty__customers",
        *ONLY_SELECTED_TESTS,
        check=True,
    )
    with site.connect() as con:
        after = {relation: rows_without_load_time(con, relation) for relation in (BRONZE, SILVER)}
    report.record(
        "dbt schema drift: --full-refresh over files with and without the column",
        runs=1,
        expected=len(before[BRONZE]),
        lost=len(set(before[BRONZE]) - set(after[BRONZE])),
        duplicated=len(after[BRONZE]) - len(set(after[BRONZE])),
        note="Bronze and Silver identical but for _loaded_at" if after == before else "tables differ",
    )
    assert after == before
    assert_published_equals_warehouse(site, SILVER)


def test_a_column_declared_or_selected_with_nothing_new_to_merge_still_reaches_the_tables(
    site: Dbt, history: History, tmp_path: Path, report: Recorder
) -> None:
    """A build with no new file keeps a model's last build (lago_cdc: materializations/nothing_new.sql), but not
    when the model's query has a column its table lacks: the build appends it, as with new files."""
    lake, project = tmp_path / "lake", site.project
    capture(lake, project, history.folders[0])
    site.build(*BUILD, check=True)
    declare_new_column(project)
    select_new_column_in_silver(project)
    site.build(*BUILD, check=True)
    messages = {r["unique_id"].split(".")[-1]: r["message"] for r in site.artifact("run_results.json")["results"]}
    with site.connect() as con:
        held = {
            relation: [row[0] for row in con.execute(f"describe {relation}").fetchall()]
            for relation in (BRONZE, SNAPSHOT, SILVER)
        }
        (values,) = con.execute(f"select count({NEW}) + count(has_tiktok) from {BRONZE}, {SILVER}").fetchone() or (-1,)
    report.record(
        "dbt schema drift: a column declared and selected, no new file",
        runs=1,
        note="the models ran ("
        + ", ".join(f"{name}: {messages[name.split('.')[1]]}" for name in (BRONZE, SNAPSHOT, SILVER))
        + "); the column in "
        + ", ".join(name for name, columns in held.items() if {NEW_COLUMN["name"], "has_tiktok"} & set(columns)),
    )
    assert NEW_COLUMN["name"] in held[BRONZE] and NEW_COLUMN["name"] in held[SNAPSHOT], held
    assert "has_tiktok" in held[SILVER], held[SILVER]
    assert values == 0
    assert "NOTHING NEW" not in {messages[name.split(".")[1]] for name in (BRONZE, SNAPSHOT, SILVER)}, messages

    # and the next build with nothing new keeps them all
    site.build(*BUILD, check=True)
    messages = {r["unique_id"].split(".")[-1]: r["message"] for r in site.artifact("run_results.json")["results"]}
    assert {messages[name.split(".")[1]] for name in (BRONZE, SNAPSHOT, SILVER)} == {"NOTHING NEW"}, messages


def test_ingestion_captures_a_table_after_a_column_is_declared(
    history: History, tmp_path: Path, report: Recorder
) -> None:
    project, lake = tmp_path / "project", tmp_path / "lake"
    (project / SOURCES_YAML).parent.mkdir(parents=True)
    shutil.copy(ROOT / SOURCES_YAML, project / SOURCES_YAML)
    capture(lake, project, history.folders[0])
    declare_new_column(project)
    report.record(
        "ingestion: the first capture after a column is declared",
        runs=2,
        note="the column reads as NULL in the previous snapshot; rows with a value are updates",
    )
    capture(lake, project, with_new_column(history.folders[1], tmp_path / "v1"))
    table = clientes(project)
    with duckdb.connect() as con:
        truth = relation_rows(con, snapshot_truth(lake, table), table.column_names)
    assert sum(1 for row in truth if row[-1] is not None) > 0


# -- a declared type change: QtdeProduto widened from integer to bigint ------------------------------------------------

LINES = "transacao_produto"
LINES_BUILD = ("--select", "source:loyalty+", "--exclude", "test_type:unit")
WIDE = 3_000_000_000  # beyond integer (INT32)


def widen_quantity(project: Path) -> None:
    path = project / SOURCES_YAML
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    (table,) = (t for s in document["sources"] for t in s["tables"] if t["name"] == LINES)
    (column,) = (c for c in table["columns"] if c["name"] == "QtdeProduto")
    assert column["data_type"] == "integer", "the declaration changed; update this test"
    column["data_type"] = "bigint"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")


def write_wide_change(lake: Path) -> str:
    """A change of one line whose quantity only a bigint holds, newer than every capture (the lake contract)."""
    files = sorted((lake / "raw" / "loyalty").glob(f"*/{LINES}/*.parquet"), key=lambda path: path.name)
    table = pq.read_table(files[-1])
    row = table.slice(0, 1).to_pylist()[0]
    row |= {
        "_cdc_operation": "U",
        "_cdc_timestamp": row["_cdc_timestamp"] + timedelta(seconds=1),
        "_cdc_sequence": row["_cdc_sequence"] + 1,
        "QtdeProduto": WIDE,
    }
    schema = table.schema.set(table.schema.get_field_index("QtdeProduto"), pa.field("QtdeProduto", pa.int64()))
    name = f"{LINES}_29990101_000000_000000.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=schema), files[-1].parent.parent.parent / "cdc" / LINES / name)
    return str(row["idTransacaoProduto"])


def test_a_widened_column_type_is_refused_incrementally_and_applied_by_the_documented_rebuild(
    site: Dbt, tmp_path: Path, report: Recorder
) -> None:
    lake, project = tmp_path / "lake", site.project
    for _ in range(2):
        ingest(lake, "--scale", "2000", "--seed", "7", env={"LAGO_PROJECT_DIR": str(project)}, check=True)
    site.build(*LINES_BUILD, check=True)

    widen_quantity(project)
    line = write_wide_change(lake)
    before = warehouse_state(site.database)
    refused = site.build(*LINES_BUILD)
    after = warehouse_state(site.database)
    errors = [
        text.strip() for text in refused.stdout.splitlines() if "QtdeProduto" in text and "--full-refresh" in text
    ]
    report.record(
        "dbt: a declared column type widened (integer to bigint), incremental build",
        runs=1,
        expected=sum(len(rows) for rows in before.values()),
        lost=0 if after == before else 1,
        note=f"exit {refused.returncode}; "
        + (f"the error: {errors[0][:220]}" if errors else "the column is not named"),
    )
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert errors, refused.stdout[-3000:]
    assert after == before, "a refused build changed the warehouse"

    # the documented steps (docs/dbt.md): rebuild the table's lineage, then build as usual
    site.build("--full-refresh", "--select", f"bronze_loyalty__{LINES}+", f"history_loyalty__{LINES}+", check=True)
    site.build(*LINES_BUILD, check=True)
    with site.connect() as con:
        quantities = [
            con.execute(query, [line]).fetchall()
            for query in (
                f'select "QtdeProduto" from bronze.bronze_loyalty__{LINES} where "idTransacaoProduto" = ?',
                f'select "QtdeProduto" from history.history_loyalty__{LINES} where "idTransacaoProduto" = ? '
                "and dbt_valid_to is null",
                "select quantity from silver.silver_loyalty__transaction_products where transaction_product_id = ?",
            )
        ]
        types = con.execute(
            "select table_name, data_type from information_schema.columns "
            "where column_name in ('QtdeProduto', 'quantity') and table_name in (?, ?, ?) order by 1",
            [f"bronze_loyalty__{LINES}", f"history_loyalty__{LINES}", "silver_loyalty__transaction_products"],
        ).fetchall()
        (cube_days,) = con.execute(
            "select count(distinct transaction_date) from gold.gold_points_daily_cube"
        ).fetchone() or (0,)
    report.record(
        "dbt: a widened column type after the documented --full-refresh",
        runs=2,
        expected=3,
        lost=sum(1 for found in quantities if found != [(WIDE,)]),
        note=f"types {types}",
    )
    assert quantities == [[(WIDE,)]] * 3
    assert {data_type for _, data_type in types} == {"BIGINT"} and len(types) == 3, types
    assert cube_days > 0
