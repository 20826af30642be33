"""The change log is the source of truth: any build cadence, late or replayed file gives what a full refresh gives.

On DuckDB: captures by the simulator, extra change files that move and delete transactions and recategorise,
delete and re-insert products, delivered to the lake in random batches (late and replayed files included) with a
`dbt build` after each batch. Then a copy of the warehouse is rebuilt with `--full-refresh` and every model must
hold the same rows, and the history must hold one version per captured change.
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
import test_dbt_duckdb as duckdb_suite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import ingest
from support.dbt import Dbt
from test_dbt_duckdb import SIMULATOR, SOURCE, TABLES, assert_snapshot_matches_states, warehouse_rows

pytestmark = pytest.mark.dbt

# the DuckDB suite's fixtures: a fresh lake and warehouse, and the simulator's state of each day
site = duckdb_suite.site
simulator_states = duckdb_suite.simulator_states

LOYALTY = ("--select", f"source:{SOURCE}+")
# columns a build stamps with its own clock: the only ones allowed to differ from a full refresh
LOAD_TIME = ("_loaded_at", "source_loaded_at")


def compared_relations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every model of the loyalty lineage: Bronze, history, Silver, Gold (not the feeds and checkpoints)."""
    rows = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema in ('bronze', 'history', 'silver', 'gold') order by 1, 2"
    ).fetchall()
    return [
        f"{schema}.{name}"
        for schema, name in rows
        if "loyalty" in name or name.startswith(("gold_points", "gold_customer"))
        if not name.endswith("__changes")
    ]


def assert_equals_full_refresh(built: Dbt) -> None:
    """Rebuild a copy of the warehouse from the same lake with --full-refresh; every model must be identical."""
    rebuilt = Dbt.at(built.work / "rebuilt", built.lake)
    rebuilt.work.mkdir()
    shutil.copy(built.database, rebuilt.database)
    rebuilt.build("--full-refresh", *LOYALTY, check=True)
    with built.connect() as incremental, rebuilt.connect() as full:
        relations = compared_relations(incremental)
        assert len(relations) >= 14, relations
        for relation in relations:
            got = warehouse_rows(incremental, relation, exclude=LOAD_TIME)
            want = warehouse_rows(full, relation, exclude=LOAD_TIME)
            assert got == want, f"{relation}: incremental builds differ from --full-refresh"


def assert_history_is_the_change_log(con: duckdb.DuckDBPyConnection, lake: str) -> None:
    """One version per distinct captured change; each closes where the key's next change starts."""
    for table in TABLES:
        key = ", ".join(f'"{k}"' for k in TABLES[table].primary_key)
        # by name: change files from the log carry a `_cdc_lsn` that loads and diffs from a snapshot do not
        changes = f"read_parquet('{lake}/raw/{SOURCE}/*/{table}/*.parquet', union_by_name = true)"
        missing = con.execute(
            f"""
            select count(*) from (
                select distinct {key}, _cdc_timestamp, _cdc_sequence, _cdc_operation from {changes}
                except
                select {key}, dbt_valid_from, _cdc_sequence, _cdc_operation from history.history_{SOURCE}__{table}
            )
            """
        ).fetchone()
        assert missing == (0,), f"{table}: captured changes without a version"
        extra = con.execute(
            f"""
            select count(*) from (
                select {key}, dbt_valid_from, _cdc_sequence from history.history_{SOURCE}__{table}
                except
                select {key}, _cdc_timestamp, _cdc_sequence from {changes}
            )
            """
        ).fetchone()
        assert extra == (0,), f"{table}: versions without a captured change"
        gaps = con.execute(
            f"""
            select count(*) from (
                select
                    dbt_valid_to,
                    lead(dbt_valid_from) over (partition by {key} order by dbt_valid_from, _cdc_sequence) as next_from,
                    dbt_valid_to < dbt_valid_from as inverted
                from history.history_{SOURCE}__{table}
            )
            where inverted or dbt_valid_to is distinct from next_from
            """
        ).fetchone()
        assert gaps == (0,), f"{table}: versions overlap, leave gaps or are inverted"


def test_six_captures_built_twice(site: Dbt, simulator_states: dict) -> None:
    """Builds after captures 2 and 6 only: history holds every captured version, and equals a full refresh."""
    for number in range(6):
        ingest(site.lake, *SIMULATOR, check=True)
        if number in (1, 5):
            site.build(*LOYALTY, check=True)
    with site.connect() as con:
        for table in TABLES:
            assert_snapshot_matches_states(con, table, [simulator_states[table, day] for day in range(6)])
        assert_history_is_the_change_log(con, site.lake)
        deletes = con.execute(
            f"""
            select count(*) from history.history_{SOURCE}__clientes as history
            inner join read_parquet('{site.lake}/raw/{SOURCE}/cdc/clientes/*.parquet') as log
                on history."idCliente" = log."idCliente" and log._cdc_operation = 'D'
            where history.dbt_is_deleted = 'True' and history.dbt_valid_from = log._cdc_timestamp
            """
        ).fetchone()
        assert deletes is not None and deletes[0] > 0, "deletion records carry the delete's capture time"
    assert_equals_full_refresh(site)


# --- random histories ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """An extra change file: one change of one row of `table`, made after capture `after`."""

    table: str
    kind: str  # move (a transaction's day, a customer's creation), delete, recategorise, reinsert, same-time
    row: int  # which row of the table's full load
    after: int


def change_files(lake: Path, table: str) -> list[Path]:
    return sorted((lake / "raw" / SOURCE).glob(f"*/{table}/*.parquet"), key=lambda path: path.name)


def write_mutation(lake: Path, mutation: Mutation, number: int) -> Path:
    """The change file of a mutation, by the lake contract, timed just after its capture."""
    files = change_files(lake, mutation.table)
    base = pq.read_table(files[0])
    row = base.slice(mutation.row % base.num_rows, 1).to_pylist()[0]
    captured = pq.read_table(files[min(mutation.after, len(files) - 1)]).column("_cdc_timestamp")[0].as_py()
    operation = "U"
    if mutation.kind == "move":
        row["DtCriacao"] = "2024-12-0" + str(1 + number % 9) + " 12:00:00.000"
    elif mutation.kind == "delete":
        operation = "D"
    elif mutation.kind == "recategorise":
        row["DescCategoriaProduto"] = ["chat", "rpg", "ponei", "present"][number % 4]
    elif mutation.kind == "reinsert":
        operation = "I"
        row["DescNomeProduto"] = f"reinserted {number}"
    elif mutation.kind == "same-time":
        captured = pq.read_table(files[-1]).column("_cdc_timestamp")[0].as_py()
    row["_cdc_operation"] = operation
    row["_cdc_timestamp"] = captured + (timedelta(0) if mutation.kind == "same-time" else timedelta(seconds=1 + number))
    row["_cdc_sequence"] = 1_000_000_000 + number
    schema = base.schema
    name = f"{mutation.table}_{captured:%Y%m%d_%H%M%S}_9{number:05d}.parquet"
    path = lake / "raw" / SOURCE / "cdc" / mutation.table / name
    pq.write_table(pa.Table.from_pylist([row], schema=schema), path)
    return path


@pytest.fixture(scope="module")
def staging_captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four simulator captures (a full load and three change files per table) to mutate and deliver."""
    lake = tmp_path_factory.mktemp("captures") / "lake"
    for _ in range(4):
        ingest(lake, *SIMULATOR, check=True)
    return lake


mutations = st.lists(
    st.builds(
        Mutation,
        table=st.sampled_from(["transacoes", "produtos", "clientes"]),
        kind=st.sampled_from(["move", "delete", "recategorise", "reinsert", "same-time"]),
        row=st.integers(0, 8),
        after=st.integers(0, 3),
    ).filter(
        lambda m: (
            (m.table, m.kind)
            in {
                ("transacoes", "move"),
                ("transacoes", "delete"),
                ("produtos", "recategorise"),
                ("produtos", "delete"),
                ("produtos", "reinsert"),
                ("clientes", "move"),
                ("clientes", "same-time"),
                ("clientes", "delete"),
            }
        )
    ),
    min_size=1,
    max_size=6,
)


def test_customers_moved_to_another_month_and_updated_in_place(staging_captures: Path, tmp_path: Path) -> None:
    """The monthly report rewrites the months whose count of new customers a build's changes move: a customer's
    creation moved to another month moves two, the simulator's points updates (creation kept) none; either way it
    equals a full refresh."""
    lake = tmp_path / "lake"
    shutil.copytree(staging_captures, lake)
    held = tmp_path / "held"
    held.mkdir()
    changes = lake / "raw" / SOURCE / "cdc" / "clientes"
    for path in changes.glob("*.parquet"):
        path.rename(held / path.name)
    site = Dbt.at(tmp_path, str(lake))
    # the capture log lists the held files: a build without them says so
    site.build(*LOYALTY, "--vars", "{allow_missing_files: true}", check=True)
    report = "gold.gold_points_monthly_report"
    before = dict(site.query(f"select month_start_date, new_customers from {report}"))
    for path in held.glob("*.parquet"):
        path.rename(changes / path.name)
    moved = write_mutation(lake, Mutation("clientes", "move", row=0, after=3), number=4)
    site.build(*LOYALTY, check=True)
    after = dict(site.query(f"select month_start_date, new_customers from {report}"))
    assert after != before, before
    december = pq.read_table(moved).column("DtCriacao")[0].as_py()[:7]
    assert any(month.isoformat().startswith(december) for month in after), (december, after)
    assert_equals_full_refresh(site)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), changes=mutations)
def test_random_histories_equal_a_full_refresh(
    staging_captures: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, changes: list[Mutation]
) -> None:
    root = tmp_path_factory.mktemp("history")
    staging = root / "staging"
    shutil.copytree(staging_captures, staging)
    for number, mutation in enumerate(changes):
        write_mutation(staging, mutation, number)
    files = sorted(staging.glob(f"raw/{SOURCE}/*/*/*.parquet"), key=lambda path: path.name)
    builds = data.draw(st.integers(1, 3), label="builds")
    # each file arrives before one of the builds: a later build for an older file makes it late
    arrival = [data.draw(st.integers(0, builds - 1), label=f"build of {path.name}") for path in files]
    replays = data.draw(st.lists(st.sampled_from(files), max_size=2), label="files delivered again")

    warehouse = Dbt.at(root)
    lake = Path(warehouse.lake)
    for build in range(builds):
        delivery = [(path, path.name) for path, when in zip(files, arrival, strict=True) if when == build]
        if build == builds - 1:
            delivery += [(path, path.stem[:-6] + f"99999{i}.parquet") for i, path in enumerate(replays)]
        for path, name in delivery:
            target = lake / path.parent.relative_to(staging) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
        if (staging / "_ingestion" / "lake.json").exists():
            (lake / "_ingestion").mkdir(parents=True, exist_ok=True)
            shutil.copy(staging / "_ingestion" / "lake.json", lake / "_ingestion" / "lake.json")
        warehouse.build(*LOYALTY, check=True)

    with warehouse.connect() as con:
        assert_history_is_the_change_log(con, warehouse.lake)
    assert_equals_full_refresh(warehouse)
