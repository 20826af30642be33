"""End to end on DuckDB: simulator captures → `dbt build --target dev` → assertions on the warehouse.

Every test writes its own lake and DuckDB file under tmp_path and gives dbt its own target and log folders
(a `support.dbt.Dbt` each), so tests can run in parallel. The expected state of a table on a simulated day comes
from the simulator itself.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import ingest
from support.dbt import Dbt

from ingestion.catalog import Table, load_catalog
from ingestion.readers.base import CaptureContext
from ingestion.readers.simulator import SimulatorReader

SOURCE = "loyalty"
SCALE = 20_000  # large enough that the simulator deletes a few customers every day
SEED = 42
# the simulator's next day
SIMULATOR = ("--scale", str(SCALE), "--seed", str(SEED))
# the loyalty lineage only, for the tests that do not need the whole project
LOYALTY = ("--select", f"source:{SOURCE}+")

pytestmark = pytest.mark.dbt

TABLES: dict[str, Table] = load_catalog().source(SOURCE).tables


@pytest.fixture
def site(tmp_path: Path) -> Dbt:
    return Dbt.at(tmp_path)


@pytest.fixture(scope="module")
def simulator_states(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, int], Path]]:
    """The simulator's snapshot of (table, day), as a Parquet file, computed on demand."""
    folder = tmp_path_factory.mktemp("simulator")
    reader = SimulatorReader(scale=SCALE, seed=SEED)

    class States(dict[tuple[str, int], Path]):
        def __missing__(self, key: tuple[str, int]) -> Path:
            table, day = key
            workdir = folder / f"{table}_{day}"
            workdir.mkdir()
            path = reader.read(TABLES[table], CaptureContext(workdir, day)).to_parquet(
                workdir / "snapshot.parquet", TABLES[table]
            )
            self[key] = path
            return path

    yield States()


def source_columns(table: str) -> str:
    return ", ".join(f'"{name}"' for name in TABLES[table].column_names)


def assert_bronze_equals(con: duckdb.DuckDBPyConnection, table: str, state: Path) -> None:
    columns = source_columns(table)
    bronze = f"bronze.bronze_{SOURCE}__{table}"
    expected = f"read_parquet('{state}')"
    counts = con.execute(
        f"""
        select
            (select count(*) from (select {columns} from {expected} except all select {columns} from {bronze})),
            (select count(*) from (select {columns} from {bronze} except all select {columns} from {expected})),
            (select count(*) from {bronze})
        """
    ).fetchone()
    assert counts is not None and counts[:2] == (0, 0), f"{table}: rows missing, extra, in bronze: {counts}"


def warehouse_rows(con: duckdb.DuckDBPyConnection, relation: str, exclude: tuple[str, ...] = ()) -> list[tuple]:
    described = con.execute(f"select * from {relation} limit 0").description
    columns = [d[0] for d in described if d[0] not in exclude]
    quoted = ", ".join(f'"{c}"' for c in columns)
    return sorted(con.execute(f"select {quoted} from {relation}").fetchall(), key=repr)


def test_captures_build_bronze_history_silver_and_gold(site: Dbt, simulator_states: dict) -> None:
    days = 4
    for day in range(days):
        ingest(site.lake, *SIMULATOR, check=True)
        # the project's unit tests, once on DuckDB: with the whole project's first build
        (site.with_unit_tests() if day == 0 else site).build(check=True)
        if day == 0:
            assert_every_unit_test_passed(site)
        with site.connect() as con:
            for table in TABLES:
                assert_bronze_equals(con, table, simulator_states[table, day])

    with site.connect() as con:
        deletes = con.execute(
            f"select count(*) from read_parquet('{site.lake}/raw/{SOURCE}/cdc/clientes/*.parquet') "
            "where _cdc_operation = 'D'"
        ).fetchone()
        assert deletes is not None and deletes[0] > 0, "the scenario must delete customers"

        # Each snapshot's versions are the sequence of captured states of each key.
        for table in TABLES:
            assert_snapshot_matches_states(con, table, [simulator_states[table, d] for d in range(days)])

        # Silver follows Bronze, deletes included; Gold reconciles with Silver (also a dbt test).
        for table, silver in [("clientes", "customers"), ("produtos", "products"), ("transacoes", "transactions")]:
            bronze_count = con.execute(f"select count(*) from bronze.bronze_{SOURCE}__{table}").fetchone()
            assert con.execute(f"select count(*) from silver.silver_{SOURCE}__{silver}").fetchone() == bronze_count
        before = {
            relation: warehouse_rows(con, relation, exclude=("_loaded_at", "source_loaded_at"))
            for relation in [f"bronze.bronze_{SOURCE}__{t}" for t in TABLES]
            + ["silver.silver_loyalty__customers", "gold.gold_points_daily_cube", "gold.gold_customer_churn"]
        }

    # --full-refresh rebuilds identical tables from the same files.
    site.build("--full-refresh", "--exclude", "resource_type:snapshot", check=True)
    with site.connect() as con:
        for relation, rows in before.items():
            assert warehouse_rows(con, relation, exclude=("_loaded_at", "source_loaded_at")) == rows, relation


def assert_every_unit_test_passed(site: Dbt) -> None:
    """The last command ran each unit test of the project, and each passed."""
    declared = set(site.artifact("manifest.json")["unit_tests"])
    results = site.artifact("run_results.json")["results"]
    ran = {result["unique_id"]: result["status"] for result in results if result["unique_id"] in declared}
    assert len(declared) >= 10 and ran == dict.fromkeys(declared, "pass"), (sorted(declared), ran)


def assert_snapshot_matches_states(con: duckdb.DuckDBPyConnection, table: str, states: list[Path]) -> None:
    columns = TABLES[table].column_names
    key = TABLES[table].primary_key
    quoted = ", ".join(f'"{c}"' for c in columns)
    expected: dict[tuple, list[tuple]] = {}
    present_at_end: set[tuple] = set()
    previous: dict[tuple, tuple] = {}
    for day, state in enumerate(states):
        rows = con.execute(f"select {quoted} from read_parquet('{state}')").fetchall()
        current = {tuple(row[columns.index(k)] for k in key): row for row in rows}
        for row_key, row in current.items():
            if previous.get(row_key) != row:
                expected.setdefault(row_key, []).append(row)
        previous = current
        if day == len(states) - 1:
            present_at_end = set(current)

    snapshot = f"history.history_{SOURCE}__{table}"
    actual: dict[tuple, list[tuple]] = {}
    for row in con.execute(
        f"select {quoted} from {snapshot} where dbt_is_deleted = 'False' order by dbt_valid_from"
    ).fetchall():
        actual.setdefault(tuple(row[columns.index(k)] for k in key), []).append(row)
    assert actual == expected, f"{table}: snapshot versions differ from the captured states"

    deleted = {
        tuple(row)
        for row in con.execute(
            f"select {', '.join(chr(34) + k + chr(34) for k in key)} from {snapshot} where dbt_is_deleted = 'True'"
        ).fetchall()
    }
    assert deleted == set(expected) - present_at_end, f"{table}: deletion records differ"


def test_late_and_replayed_files(site: Dbt, staging_lake: Path, simulator_states: dict) -> None:
    """Files delivered out of order, and a file delivered twice, leave Bronze equal to the latest state."""
    staging = staging_lake  # day 0 (full load) and the change files of days 1, 2, 3

    def files(kind: str, table: str) -> list[Path]:
        return sorted((staging / "raw" / SOURCE / kind / table).glob("*.parquet"))

    def deliver(path: Path, name: str | None = None) -> None:
        target = Path(site.lake) / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target.with_name(name) if name else target)

    late: dict[str, list[Path]] = {}
    for table in TABLES:
        deliver(files("full-load", table)[0])
        changes = files("cdc", table)  # a day without changes has no file
        for path in changes[:1] + changes[-1:]:
            deliver(path)
        late[table] = changes[1:-1]
    site.build(check=True)

    for table in TABLES:
        for path in late[table]:
            deliver(path)  # late: older than the newest change already merged
        first = files("cdc", table)[0]
        deliver(first, name=f"{table}_29991231_235959_999999.parquet")  # replayed under a new name
        deliver(first)  # replayed under its own name: already merged, never read again
    site.build(*LOYALTY, check=True)

    with site.connect() as con:
        for table in TABLES:
            assert_bronze_equals(con, table, simulator_states[table, 3])
        merged = con.execute(
            "select count(*) from bronze.bronze_processed_files where model_name = 'bronze_loyalty__clientes'"
        ).fetchone()
        assert merged == (5,)  # full load, days 1-3 and the renamed replay

    # Nothing new: a build changes nothing.
    with site.connect() as con:
        before = warehouse_rows(con, "bronze.bronze_loyalty__clientes")
    site.build("--select", "bronze_loyalty__clientes", check=True)
    with site.connect() as con:
        assert warehouse_rows(con, "bronze.bronze_loyalty__clientes") == before


def test_a_build_before_the_first_capture(site: Dbt, simulator_states: dict) -> None:
    """An empty lake builds empty tables; the next capture fills every layer (gold reconciles, a dbt test)."""
    site.build(*LOYALTY, check=True)
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    with site.connect() as con:
        assert_bronze_equals(con, "clientes", simulator_states["clientes", 0])
        assert con.execute("select count(*) > 0 from gold.gold_points_daily_cube").fetchone() == (True,)


# the models whose SQL reads the lake or a change feed, and where dbt compile writes each
COMPILED = {
    "bronze_loyalty__clientes": "bronze/loyalty/bronze_loyalty__clientes.sql",
    "history_loyalty__clientes": "history/loyalty/history_loyalty__clientes.sql",
    "silver_loyalty__customers": "silver/loyalty/silver_loyalty__customers.sql",
}


def compiled_sql(site: Dbt) -> dict[str, str]:
    site.compile("--select", *COMPILED, check=True)
    folder = site.target_path / "compiled" / "lago_mago" / "models"
    return {model: (folder / path).read_text(encoding="utf-8") for model, path in COMPILED.items()}


# the comment a model's SQL holds for an input with nothing new (lago_cdc: materializations/nothing_new.sql)
NOTHING_NEW = re.compile(r"/[*] lago_cdc: nothing new in \S+ since the last build [*]/")


def test_compiled_sql_reads_the_same_on_any_lake(site: Dbt) -> None:
    """`dbt compile` shows each incremental model's logic, not one lake's state: the files to read and the feed
    versions are resolved by the statement, so the SQL is the same with new files waiting, after they are merged,
    and after the next capture, and names no lake file and no version. Only a comment differs: the one that says
    an input has nothing new since the model's last build, there when nothing waits for the model and only then."""
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    merged = compiled_sql(site)
    ingest(site.lake, *SIMULATOR, check=True)
    waiting = compiled_sql(site)
    site.build(*LOYALTY, check=True)
    assert site.query("select count(distinct _source_file) from bronze.bronze_loyalty__clientes")[0][0] >= 2
    again = compiled_sql(site)
    assert all(len(NOTHING_NEW.findall(sql)) == 1 for sql in [*merged.values(), *again.values()]), merged
    # files waiting: Bronze and history have something new; Silver not yet (Bronze has not merged them)
    assert [model for model, sql in waiting.items() if NOTHING_NEW.search(sql)] == ["silver_loyalty__customers"]

    def logic(compiled: dict[str, str]) -> dict[str, str]:
        return {model: re.sub(r"\s*" + NOTHING_NEW.pattern, "", sql) for model, sql in compiled.items()}

    assert logic(again) == logic(waiting) == logic(merged)
    for model, sql in merged.items():
        assert not re.search(r"clientes_\d{8}_\d{6}_\d{6}[.]parquet", sql), f"{model} names a lake file"
        assert not re.search(r"_commit_version\s*[<>]=?\s*\d", sql), f"{model} names a feed version"
        # what resolves them instead: the checkpoint (lake files) or the feed's bookkeeping (versions)
        resolved_by = "change_feed_positions" if model.startswith("silver_") else "bronze_processed_files"
        assert resolved_by in sql, model


def write_change_file(lake: Path, kind: str, name: str, rows: list[tuple[str, int, str, int]]) -> None:
    """A clientes file by the lake contract; rows are (operation, sequence, capture time, points)."""
    table = TABLES["clientes"]
    schema = pa.schema(
        [
            pa.field("_cdc_operation", pa.string()),
            pa.field("_cdc_timestamp", pa.timestamp("us", tz="UTC")),
            pa.field("_cdc_sequence", pa.int64()),
            *table.schema,
        ]
    )
    columns: dict[str, list[object]] = {field.name: [] for field in schema}
    for operation, sequence, captured_at, points in rows:
        values = {
            "_cdc_operation": operation,
            "_cdc_timestamp": datetime.fromisoformat(captured_at).replace(tzinfo=UTC),
            "_cdc_sequence": sequence,
            "idCliente": "c1",
            "qtdePontos": points,
            "DtCriacao": "2025-01-01 00:00:00.000",
            "DtAtualizacao": captured_at + ".000",
        }
        for field in schema:
            columns[field.name].append(values.get(field.name, 0 if pa.types.is_integer(field.type) else None))
    path = lake / "raw" / SOURCE / kind / "clientes" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), path)


def build_messages(site: Dbt) -> dict[str, str]:
    """Each model of the last build and its run's message (NOTHING NEW: it kept its last build)."""
    results = site.artifact("run_results.json")["results"]
    return {r["unique_id"].split(".")[-1]: r["message"] for r in results if r["unique_id"].startswith("model.")}


def test_a_model_with_nothing_new_keeps_its_last_build_and_a_change_runs_only_what_it_feeds(site: Dbt) -> None:
    """Bronze, history, Silver and Gold's incremental models whose every input has nothing new since their last
    build keep it (lago_cdc: materializations/nothing_new.sql): tables, change feeds, checkpoint and feed positions
    as they were. A change of one table runs its own lineage only, and the tables equal a --full-refresh."""
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    change_applying = {
        f"{layer}_{SOURCE}__{name}" for layer, names in (("bronze", TABLES), ("history", TABLES)) for name in names
    } | {
        "silver_loyalty__customers",
        "silver_loyalty__products",
        "silver_loyalty__transactions",
        "silver_loyalty__transaction_products",
    }
    relations = [f"{layer}.{name}" for name in sorted(change_applying) for layer in [name.split("_")[0]]]
    state = [
        "bronze.bronze_processed_files",
        "bronze.change_feed_commits",
        "bronze.change_feed_positions",
        *(f"{relation}__changes" for relation in relations if not relation.startswith("history")),
    ]
    with site.connect() as con:
        before = {relation: warehouse_rows(con, relation) for relation in relations + state}
    assert all(before[relation] for relation in relations), "an empty table proves nothing"

    gold = {"gold_points_daily_cube", "gold_points_monthly_report"}
    # its file log at debug (the first build's is at info): the statements of this build alone
    site.build(*LOYALTY, "--log-level-file", "debug", check=True)
    messages = build_messages(site)
    log = (site.log_path / "dbt.log").read_text(encoding="utf-8")
    assert "On list_" in log, "the debug log holds no schema listing: the check below proves nothing"
    # every schema exists: dbt creates none again (dbt-duckdb compared the quoted database name with the catalogs'
    # names, matched none, and dbt created every schema in every build: macros/adapters/dbt_duckdb_patches.sql)
    assert "Creating schema" not in log, [line for line in log.splitlines() if "Creating schema" in line]
    assert {name for name, message in messages.items() if message == "NOTHING NEW"} == change_applying | gold
    with site.connect() as con:
        assert {relation: warehouse_rows(con, relation) for relation in relations + state} == before

    # one new customer: clientes' Bronze, history and Silver run; the other tables' models keep their build
    write_change_file(
        Path(site.lake), "cdc", "clientes_29990101_000000_000000.parquet", [("I", 1, "2999-01-01 00:00:00", 7)]
    )
    site.build(*LOYALTY, check=True)
    messages = build_messages(site)
    # (the daily cube reads no customer; the monthly report counts new customers per month)
    ran = {"bronze_loyalty__clientes", "history_loyalty__clientes", "silver_loyalty__customers"}
    ran |= {"gold_points_monthly_report"}
    assert {name for name, message in messages.items() if message == "NOTHING NEW"} == (change_applying | gold) - ran
    with site.connect() as con:
        assert con.execute(
            "select count(*) from silver.silver_loyalty__customers where customer_id = 'c1'"
        ).fetchone() == (1,)
        incremental = {relation: warehouse_rows(con, relation, exclude=("_loaded_at",)) for relation in relations}
        gold_rows = {name: warehouse_rows(con, f"gold.{name}", exclude=("source_loaded_at",)) for name in gold}
    site.build("--full-refresh", *LOYALTY, check=True)
    with site.connect() as con:
        assert {
            relation: warehouse_rows(con, relation, exclude=("_loaded_at",)) for relation in relations
        } == incremental
        assert {name: warehouse_rows(con, f"gold.{name}", exclude=("source_loaded_at",)) for name in gold} == gold_rows


def test_a_late_update_does_not_resurrect_a_deleted_row(site: Dbt) -> None:
    lake = Path(site.lake)
    select = ("--select", "bronze_loyalty__clientes")
    write_change_file(
        lake, "full-load", "clientes_20250101_000000_000000.parquet", [("I", 1, "2025-01-01 00:00:00", 1)]
    )
    write_change_file(lake, "cdc", "clientes_20250103_000000_000000.parquet", [("D", 3, "2025-01-03 00:00:00", 2)])
    site.run(*select, check=True)
    write_change_file(lake, "cdc", "clientes_20250102_000000_000000.parquet", [("U", 2, "2025-01-02 00:00:00", 2)])
    site.run(*select, check=True)
    with site.connect() as con:
        assert con.execute("select count(*) from bronze.bronze_loyalty__clientes").fetchone() == (0,)

    # Re-inserted later: the newest change wins again, and a late replay of the delete changes nothing.
    write_change_file(lake, "cdc", "clientes_20250104_000000_000000.parquet", [("I", 4, "2025-01-04 00:00:00", 4)])
    site.run(*select, check=True)
    write_change_file(lake, "cdc", "clientes_20250105_000000_000000.parquet", [("D", 3, "2025-01-03 00:00:00", 2)])
    site.run(*select, check=True)
    with site.connect() as con:
        assert con.execute('select "qtdePontos", _cdc_sequence from bronze.bronze_loyalty__clientes').fetchall() == [
            (4, 4)
        ]


@pytest.fixture(scope="module")
def staging_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four captures (a full load and three change files per table) to deliver in any order."""
    lake = tmp_path_factory.mktemp("staging") / "lake"
    for _ in range(4):
        ingest(lake, *SIMULATOR, check=True)
    return lake


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_delivery_order_and_replay_gives_the_same_bronze(
    staging_lake: Path, simulator_states: dict, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    files = sorted(staging_lake.glob(f"raw/{SOURCE}/*/clientes/*.parquet"))
    order = data.draw(st.permutations(files), label="delivery order")
    cut = data.draw(st.integers(1, len(files)), label="files in the first delivery")
    replays = data.draw(st.lists(st.sampled_from(files), max_size=2), label="files delivered again")

    site = Dbt.at(tmp_path_factory.mktemp("order"))
    lake = Path(site.lake)
    renamed = [(path, f"clientes_29990101_000000_00000{i}.parquet") for i, path in enumerate(replays)]
    for delivery in ([(path, path.name) for path in order[:cut]], [(p, p.name) for p in order[cut:]] + renamed):
        for path, name in delivery:
            target = lake / path.parent.relative_to(staging_lake) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
        site.run("--select", "bronze_loyalty__clientes", check=True)

    with site.connect() as con:
        assert_bronze_equals(con, "clientes", simulator_states["clientes", 3])


def test_backfill_rewrites_only_the_given_dates(site: Dbt) -> None:
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    cube = "gold.gold_points_daily_cube"
    with site.connect() as con:
        built = warehouse_rows(con, cube)
    assert len(built) > 0

    # The documented command, with a range that holds no transaction and no unit-test date: the unit tests it
    # runs do not depend on the backfill vars, and a range without data rewrites nothing.
    site.with_unit_tests().build(
        "--select",
        "gold_points_daily_cube",
        "--vars",
        "{backfill_start_date: '2031-03-01', backfill_end_date: '2031-03-31'}",
        check=True,
    )
    ran = {result["unique_id"].split(".")[0] for result in site.artifact("run_results.json")["results"]}
    assert "unit_test" in ran, ran
    with site.connect() as con:
        assert warehouse_rows(con, cube) == built

    with site.connect(read_only=False) as con:
        first, second = con.execute(f"select distinct transaction_date from {cube} order by 1 limit 2").fetchall()
        con.execute(f"update {cube} set transactions = -1 where transaction_date in (?, ?)", [first[0], second[0]])

    day = first[0].isoformat()
    site.run(
        "--select",
        "gold_points_daily_cube",
        "--vars",
        f"{{backfill_start_date: '{day}', backfill_end_date: '{day}'}}",
        check=True,
    )
    with site.connect() as con:
        rewritten = con.execute(f"select min(transactions) from {cube} where transaction_date = ?", [first[0]])
        assert rewritten.fetchone()[0] > 0
        untouched = con.execute(f"select max(transactions) from {cube} where transaction_date = ?", [second[0]])
        assert untouched.fetchone() == (-1,)


@pytest.mark.s3
def test_an_s3_lake(tmp_path: Path, s3_lake_env: str, simulator_states: dict) -> None:
    site = Dbt.at(tmp_path, s3_lake_env)
    for _ in range(2):
        ingest(site.lake, *SIMULATOR, check=True)
        site.build(*LOYALTY, check=True)
    with site.connect() as con:
        for table in TABLES:
            assert_bronze_equals(con, table, simulator_states[table, 1])


def test_column_checks_name_every_broken_rule_and_count_its_rows(site: Dbt) -> None:
    """A model's column rules are one test: each broken rule is a row naming it, the failures are the broken rows,
    and a model whose last build wrote no broken row passes while another model's test fails."""
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    with site.connect(read_only=False) as con:
        customers = "silver.silver_loyalty__customers"
        first_two = f"select customer_id from {customers} order by customer_id limit 2"
        con.execute(f"update {customers} set points_balance = null where customer_id in ({first_two})")
        con.execute(f"insert into {customers} select * from {customers} order by customer_id desc limit 3")
        con.execute("update bronze.bronze_loyalty__produtos set _cdc_operation = 'X' where rowid < 4")
        cube = "gold.gold_points_daily_cube"
        con.execute(f"update {cube} set points_spent = -1 where grouping_level = 'day'")
        con.execute(f"update {cube} set product_category = 'chat' where grouping_id = 3")
        day_totals = con.execute(f"select count(*) from {cube} where grouping_id = 3").fetchone()
        # a second open version of two customers (a version of their own: a new dbt_scd_id)
        history = "history.history_loyalty__clientes"
        con.execute(
            f"insert into {history} select * replace (md5(dbt_scd_id) as dbt_scd_id) from {history} "
            'where dbt_valid_to is null order by "idCliente" limit 2'
        )
    assert day_totals is not None and day_totals[0] > 0

    result = site.test(*LOYALTY, "--store-failures", "--vars", "{full_tests: true}")
    assert result.returncode == 1
    statuses = {r["unique_id"].split(".")[2]: r for r in site.artifact("run_results.json")["results"]}
    broken = {
        "column_checks_silver_loyalty__customers": {("not_null", "points_balance"): 2, ("unique", "customer_id"): 3},
        "column_checks_bronze_loyalty__produtos": {("accepted_values", "_cdc_operation"): 4},
        "column_checks_history_loyalty__clientes": {("unique_where", "(idCliente) where dbt_valid_to is null"): 2},
        "column_checks_gold_points_daily_cube": {
            ("accepted_range", "points_spent"): day_totals[0],
            ("expression_is_true", "(grouping_id in (0, 2)) = (source_system is not null)"): 0,
            ("expression_is_true", "(grouping_id in (0, 1)) = (product_category is not null)"): day_totals[0],
        },
    }
    for name, rules in broken.items():
        expected = {rule: rows for rule, rows in rules.items() if rows}
        assert (statuses[name]["status"], statuses[name]["failures"]) == ("fail", sum(expected.values())), name
        stored = site.query(f"select rule_name, checked, failing_rows from dbt_test__audit.{name}")
        assert {(rule, checked): rows for rule, checked, rows in stored} == expected, name
        assert f"Failure in test {name}" in result.stdout
    assert statuses["column_checks_silver_loyalty__transactions"]["status"] == "pass"


def capture_without_first_day(site: Dbt) -> str:
    """A CSV capture of the loyalty transactions and their lines as Bronze holds them, but for the transactions
    of the first day and their lines: deletes only. That day, as text."""
    folder = site.work / "without-first-day"
    folder.mkdir()
    first_day = "(select min(left(DtCriacao, 10)) from bronze.bronze_loyalty__transacoes)"
    kept = {
        "transacoes": f"where left(DtCriacao, 10) <> {first_day}",
        "transacao_produto": "where IdTransacao in (select IdTransacao from bronze.bronze_loyalty__transacoes "
        f"where left(DtCriacao, 10) <> {first_day})",
    }
    with site.connect() as con:
        day = str(con.execute(f"select {first_day}").fetchall()[0][0])
        for name, where in kept.items():
            table = TABLES[name]
            columns = ", ".join(f'"{column}"' for column in table.column_names)
            con.execute(
                f"copy (select {columns} from bronze.bronze_loyalty__{name} {where}) to '{folder / name}.csv' "
                f"(header, delimiter '{table.csv_separator}')"
            )
    tables = ",".join(kept)
    ingest(site.lake, "--source", SOURCE, "--from", "csv", "--path", str(folder), "--tables", tables, check=True)
    return day


def test_tests_read_what_the_last_builds_wrote(site: Dbt) -> None:
    """As an incremental model's tests read its newest rows: the churn view (one row per customer, no rows of its
    own) is tested on the customers the last builds of Silver's customers and transactions wrote, and the cube's
    reconciliation with Silver on the days they wrote. A duplicate customer or a wrong day total among those fails;
    one elsewhere is seen by the full check only."""
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    ingest(site.lake, *SIMULATOR, check=True)
    site.build(*LOYALTY, check=True)
    cube = "gold.gold_points_daily_cube"
    reconcile = ("--select", "assert_gold_cube_reconciles_with_silver")

    # a capture that deletes a day's transactions, lines and all: the build takes the cube's rows of that day away,
    # and the reconciliation reads that day through the deletes of Silver's last commit, so a row kept there fails
    emptied = capture_without_first_day(site)
    site.build(*LOYALTY, check=True)
    on_emptied_day = f"from {cube} where transaction_date = date '{emptied}'"
    assert site.query(f"select count(*) {on_emptied_day}") == [(0,)]
    with site.connect(read_only=False) as con:
        con.execute(
            f"insert into {cube} select * replace (date '{emptied}' as transaction_date) from {cube} "
            "where grouping_level = 'day' order by transaction_date limit 1"
        )
    result = site.test(*reconcile)
    assert result.returncode == 1 and "Got 1 result" in result.stdout, result.stdout[-3000:]
    with site.connect(read_only=False) as con:
        con.execute(f"delete {on_emptied_day}")

    customers = "silver.silver_loyalty__customers"
    newest = f"(select max(_loaded_at) from {customers})"
    written, untouched = (
        site.query(f"select count(*) from {customers} where _loaded_at {op} {newest}")[0][0] for op in ("=", "<")
    )
    assert written > 0 and untouched > written, (written, untouched)
    transactions = "silver.silver_loyalty__transactions"
    bought = f"select customer_id from {transactions} where _loaded_at = (select max(_loaded_at) from {transactions})"
    old_day = site.query(
        f"select min(transaction_date) from {cube} where source_loaded_at < (select max(source_loaded_at) from {cube}) "
        f"and transaction_date not in (select transaction_date from {transactions} where _loaded_at = "
        f"(select max(_loaded_at) from {transactions}))"
    )[0][0]
    assert old_day is not None
    tests = ("column_checks_gold_customer_churn", "assert_gold_cube_reconciles_with_silver")

    def spoil(which: str, day: str) -> None:
        """A duplicated customer (`which` against the newest load) and a day total off by one, on `day`."""
        with site.connect(read_only=False) as con:
            con.execute(
                f"insert into {customers} select * from {customers} where _loaded_at {which} {newest} "
                f"and customer_id not in ({bought}) order by customer_id limit 1"
            )
            con.execute(f"update {cube} set transactions = transactions + 1 where grouping_level = 'day' "
                        f"and transaction_date = {day}")  # fmt: skip

    def failed(*args: str) -> list[str]:
        """The tests that failed, each on exactly one row."""
        result = site.test("--select", *tests, *args)
        statuses = {
            r["unique_id"].split(".")[2]: (r["status"], r["failures"])
            for r in site.artifact("run_results.json")["results"]
            if r["unique_id"].startswith("test.")
        }
        assert set(statuses) == set(tests), statuses
        assert result.returncode == (1 if any(status != "pass" for status, _ in statuses.values()) else 0), statuses
        assert all(failures in (0, 1) for _, failures in statuses.values()), statuses
        return sorted(name for name, (status, _) in statuses.items() if status == "fail")

    # a customer no build wrote since the first (without a transaction in the last), a day no build wrote since
    spoil("<", f"date '{old_day}'")
    assert failed() == []
    assert failed("--vars", "{full_tests: true}") == sorted(tests)
    # then a customer and the day the last build wrote
    spoil("=", f"(select max(transaction_date) from {cube})")
    assert failed() == sorted(tests)
