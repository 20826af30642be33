"""The CDC engine as a dbt package: `packages/lago_cdc/integration_tests`, a small project that uses it as any
project would, built with real dbt on a real DuckDB file, then on Spark + Delta, over a lake written here.

The lake holds two tables of a source `shop` (a single-column key, a composite key), arriving in three phases: a
full load and a first CDC file; a second CDC file; then a late file (older than what was merged) and a third. The
files hold inserts, updates, deletes, re-inserts of deleted keys, a NULL filled later, and two changes of one key at
one time told apart by `_cdc_sequence` only (written in the reverse order). What every model must hold is computed
here from the changes alone: Bronze is the latest change per key minus deletes; history is every change a version,
valid until the key's next change; the consumer of Bronze's change feed equals Bronze; and the feed of each build is
the difference between Bronze before and after it. DuckDB builds after each phase (a first build and two
incremental ones), then with `--full-refresh`, which must give the same tables. Spark builds after phases 2 and 3
only (a JVM per dbt command costs seconds): a first build, then an incremental one with the late file; its Delta
tables and their Change Data Feed are read back with delta-rs, without a JVM.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from spark_support import REPO_ROOT, ensure_spark_jars, jars_dir, profile_spark_parameters
from support.dbt import Dbt

pytestmark = pytest.mark.dbt

PROJECT = REPO_ROOT / "packages" / "lago_cdc" / "integration_tests"
# the engine's state tables a build writes as it goes: which lake files each model merged, how far each consumer
# read each feed
RECORDS_OF_PROGRESS = ("bronze_processed_files", "change_feed_positions")
SOURCE = "shop"

Operation = Literal["I", "U", "D"]
Folder = Literal["full-load", "cdc"]
ChangeType = Literal["insert", "update_preimage", "update_postimage", "delete"]
Row = tuple[Any, ...]
Key = tuple[Any, ...]
# a change feed's rows (its change type and the Bronze columns), counted
Feed = Counter[tuple[ChangeType, Row]]


@dataclass(frozen=True)
class Table:
    """A declared table of the integration project (models/bronze/_shop__sources.yml): key and typed columns."""

    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type), in declaration order

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def key_of(self, values: Row) -> Key:
        return tuple(values[self.column_names.index(name)] for name in self.key)


CUSTOMERS = Table(
    "customers",
    ("customer_id",),
    (
        ("customer_id", "integer"),
        ("customer_name", "varchar"),
        ("points", "bigint"),
        ("is_vip", "boolean"),
        ("signed_up_on", "date"),
    ),
)
ORDER_LINES = Table(
    "order_lines",
    ("order_id", "line_number"),
    (
        ("order_id", "varchar"),
        ("line_number", "integer"),
        ("product_name", "varchar"),
        ("quantity", "integer"),
        ("unit_price", "decimal(10,2)"),
    ),
)
TABLES = (CUSTOMERS, ORDER_LINES)


@dataclass(frozen=True)
class Change:
    operation: Operation
    sequence: int
    values: Row  # the table's columns in declaration order (a delete carries the row it deletes)


@dataclass(frozen=True)
class LakeFile:
    """One change file as the ingestion writes it: every row captured at the time its name holds."""

    table: Table
    folder: Folder
    captured_at: datetime
    changes: tuple[Change, ...]  # in the file's row order

    @property
    def file_id(self) -> str:
        name = f"{self.table.name}_{self.captured_at:%Y%m%d_%H%M%S_%f}.parquet"
        return f"raw/{SOURCE}/{self.folder}/{self.table.name}/{name}"


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def change(operation: Operation, sequence: int, *values: Any) -> Change:
    return Change(operation, sequence, values)


SIGNED_UP = date(2026, 1, 10)
# the late file's capture time: after the first CDC file, before the second, which is merged before it arrives
LATE = at(2, 20)

PHASES: tuple[tuple[LakeFile, ...], ...] = (
    (
        LakeFile(
            CUSTOMERS,
            "full-load",
            at(1, 8),
            (
                change("I", 1, 1, "Ana", 100, False, SIGNED_UP),
                change("I", 2, 2, "Bruno", 200, False, SIGNED_UP),
                change("I", 3, 3, "Carla", 300, True, SIGNED_UP),
                change("I", 4, 4, "Davi", 400, False, SIGNED_UP),
                change("I", 5, 5, "Eva", 500, False, SIGNED_UP),
            ),
        ),
        LakeFile(
            CUSTOMERS,
            "cdc",
            at(2, 8),
            (
                change("U", 10, 1, "Ana", 150, False, SIGNED_UP),
                change("D", 11, 2, "Bruno", 200, False, SIGNED_UP),
                # two updates of customer 3 at one time: the sequence orders them, not the rows' order
                change("U", 13, 3, "Carla", 320, True, SIGNED_UP),
                change("U", 12, 3, "Carla", 310, True, SIGNED_UP),
                change("I", 14, 6, "Fabio", 60, False, date(2026, 3, 2)),
            ),
        ),
        LakeFile(
            ORDER_LINES,
            "full-load",
            at(1, 8),
            (
                change("I", 1, "A", 1, "pen", 2, Decimal("1.50")),
                change("I", 2, "A", 2, "ink", 1, Decimal("7.25")),
                change("I", 3, "B", 1, "pad", 3, Decimal("2.00")),
                change("I", 4, "B", 2, "pen", 1, Decimal("1.50")),
            ),
        ),
        LakeFile(
            ORDER_LINES,
            "cdc",
            at(2, 8),
            (
                change("U", 10, "A", 2, "ink", 2, Decimal("7.25")),
                change("D", 11, "B", 1, "pad", 3, Decimal("2.00")),
                change("I", 12, "C", 1, "cup", 1, Decimal("4.99")),
            ),
        ),
    ),
    (
        LakeFile(
            CUSTOMERS,
            "cdc",
            at(3, 8),
            (
                change("U", 20, 4, "Davi", 470, True, SIGNED_UP),
                change("D", 21, 5, "Eva", 500, False, SIGNED_UP),
                change("I", 22, 7, None, 70, False, date(2026, 3, 3)),
                # a deleted customer comes back
                change("I", 23, 2, "Bruno", 0, False, date(2026, 3, 3)),
                # customer 1 updated, then deleted, at one time; the delete is written first
                change("D", 25, 1, "Ana", 175, False, SIGNED_UP),
                change("U", 24, 1, "Ana", 175, False, SIGNED_UP),
                change("U", 26, 6, "Fabio", 65, False, date(2026, 3, 2)),
            ),
        ),
        LakeFile(
            ORDER_LINES,
            "cdc",
            at(3, 8),
            (
                change("U", 21, "A", 1, "pen", 5, Decimal("1.40")),
                change("U", 20, "A", 1, "pen", 4, Decimal("1.40")),
                change("D", 22, "B", 2, "pen", 1, Decimal("1.50")),
                change("I", 23, "C", 2, "mug", 1, Decimal("9.00")),
            ),
        ),
    ),
    (
        # late: captured before the second CDC file, arriving after it was merged
        LakeFile(
            CUSTOMERS,
            "cdc",
            LATE,
            (
                change("U", 15, 3, "Carla", 330, True, SIGNED_UP),  # newer than Bronze's row: applies
                change("U", 16, 4, "Davi", 450, False, SIGNED_UP),  # older than Bronze's row: history only
                change("U", 17, 5, "Eva", 550, False, SIGNED_UP),  # deleted since: must not come back
                change("I", 18, 8, "Hugo", 80, False, date(2026, 3, 2)),
            ),
        ),
        LakeFile(
            CUSTOMERS,
            "cdc",
            at(4, 8),
            (
                change("U", 30, 7, "Gina", 75, False, date(2026, 3, 3)),
                change("I", 31, 9, "Iris", 90, True, date(2026, 3, 4)),
            ),
        ),
        LakeFile(
            ORDER_LINES,
            "cdc",
            LATE,
            (
                change("U", 15, "C", 1, "cup", 2, Decimal("4.99")),  # applies
                change("U", 16, "A", 1, "pen", 3, Decimal("1.50")),  # older than Bronze's row: history only
            ),
        ),
        LakeFile(
            ORDER_LINES,
            "cdc",
            at(4, 8),
            (
                change("U", 30, "A", 2, "ink", 3, Decimal("7.00")),
                change("I", 31, "B", 1, "pad", 1, Decimal("2.10")),
            ),
        ),
    ),
)


# --- the lake --------------------------------------------------------------------------------------------------------


def write_lake_identity(lake: Path) -> None:
    """`_ingestion/lake.json`, which the project's on-run-start hook records for the warehouse."""
    identity = {"lake_id": uuid.uuid4().hex, "created_at": "2026-03-01T00:00:00+00:00"}
    (lake / "_ingestion").mkdir(parents=True, exist_ok=True)
    (lake / "_ingestion" / "lake.json").write_text(json.dumps(identity), encoding="utf-8")


def write_file(lake: Path, file: LakeFile) -> None:
    """The file with DuckDB, its columns typed as declared (the lake's change-file contract)."""
    path = lake / file.file_id
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [("_cdc_operation", "varchar"), ("_cdc_timestamp", "timestamptz"), ("_cdc_sequence", "bigint")]
    columns += list(file.table.columns)
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"create table changes ({', '.join(f'{name} {kind}' for name, kind in columns)})")
        con.executemany(
            f"insert into changes values ({', '.join('?' for _ in columns)})",
            [(change.operation, file.captured_at, change.sequence, *change.values) for change in file.changes],
        )
        # one row group in the rows' order: the file's row positions are the changes' order in it
        con.execute(f"copy (select * from changes order by rowid) to '{path}' (format parquet)")


# --- what each model must hold, computed from the changes ------------------------------------------------------------


@dataclass(frozen=True, order=True)
class LoggedChange:
    """A change where the log places it: ordered by (time, sequence, file, position), as the engine orders them."""

    timestamp: datetime
    sequence: int
    file_id: str
    position: int
    operation: Operation
    values: Row


def logged_changes(files: Sequence[LakeFile], table: Table) -> dict[Key, list[LoggedChange]]:
    """Every change of the table in the files, per key, in the log's order."""
    by_key: dict[Key, list[LoggedChange]] = {}
    for file in files:
        if file.table != table:
            continue
        for position, change in enumerate(file.changes):
            logged = LoggedChange(
                file.captured_at, change.sequence, file.file_id, position, change.operation, change.values
            )
            by_key.setdefault(table.key_of(change.values), []).append(logged)
    return {key: sorted(changes) for key, changes in by_key.items()}


def expected_bronze(files: Sequence[LakeFile], table: Table) -> dict[Key, Row]:
    """The latest change of each key, unless it is a delete: the columns, then _cdc_operation, _cdc_timestamp,
    _cdc_sequence, _source_file."""
    current: dict[Key, Row] = {}
    for key, changes in logged_changes(files, table).items():
        last = changes[-1]
        if last.operation != "D":
            current[key] = (*last.values, last.operation, last.timestamp, last.sequence, last.file_id)
    return current


def expected_history(files: Sequence[LakeFile], table: Table) -> list[Row]:
    """Every change a version, valid from its time until the key's next change: the Bronze columns, then
    dbt_valid_from, dbt_valid_to, dbt_is_deleted."""
    versions: list[Row] = []
    for changes in logged_changes(files, table).values():
        for index, change in enumerate(changes):
            valid_to = changes[index + 1].timestamp if index + 1 < len(changes) else None
            versions.append(
                (
                    *change.values,
                    change.operation,
                    change.timestamp,
                    change.sequence,
                    change.file_id,
                    change.timestamp,
                    valid_to,
                    "True" if change.operation == "D" else "False",
                )
            )
    return sorted(versions, key=repr)


def expected_feed(before: dict[Key, Row], after: dict[Key, Row]) -> Feed:
    """A build's change feed: what changed between Bronze before and after it, as Delta's Change Data Feed has it."""
    feed: Feed = Counter()
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old is not None and new is None:
            feed["delete", old] += 1
        elif old is None and new is not None:
            feed["insert", new] += 1
        elif old is not None and new is not None and old != new:
            feed["update_preimage", old] += 1
            feed["update_postimage", new] += 1
    return feed


def expected_rows(files: Sequence[LakeFile]) -> dict[str, list[Row]]:
    """What each model holds once the files are merged."""
    rows: dict[str, list[Row]] = {}
    for table in TABLES:
        rows[bronze_model(table)] = list(expected_bronze(files, table).values())
        rows[history_model(table)] = expected_history(files, table)
    rows["silver_shop__order_lines"] = list(expected_bronze(files, ORDER_LINES).values())
    return rows


# --- what the warehouses hold ----------------------------------------------------------------------------------------

CDC_COLUMNS = ("_cdc_operation", "_cdc_timestamp", "_cdc_sequence", "_source_file")
HISTORY_COLUMNS = (*CDC_COLUMNS, "dbt_valid_from", "dbt_valid_to", "dbt_is_deleted")
# the consumer's columns (models/silver/silver_shop__order_lines.sql)
SILVER_COLUMNS = (*ORDER_LINES.column_names, "_cdc_operation", "_cdc_timestamp", "_cdc_sequence")


def normalized(row: Row) -> Row:
    """Timestamps in UTC, whichever zone the reader gave them."""
    return tuple(value.astimezone(UTC) if isinstance(value, datetime) else value for value in row)


class Warehouse(Protocol):
    def rows(self, model: str, columns: Sequence[str]) -> list[Row]:
        """The model's rows, these columns, sorted."""
        ...

    def feed_version(self, model: str) -> int:
        """The latest commit version of a producer's change feed."""
        ...

    def feed(self, model: str, after: int, upto: int) -> Feed:
        """The feed's rows of versions in (after, upto]: change type and the Bronze columns."""
        ...


def relations(site: Dbt) -> dict[str, tuple[str, str]]:
    """Each model's schema and table name, as the last command's manifest has them."""
    nodes = site.artifact("manifest.json")["nodes"].values()
    return {node["name"]: (node["schema"], node["alias"]) for node in nodes if node["resource_type"] == "model"}


@dataclass(frozen=True)
class DuckDBWarehouse:
    site: Dbt

    def query(self, sql: str) -> list[Row]:
        with duckdb.connect(str(self.site.database), read_only=True) as con:
            con.execute("set TimeZone = 'UTC'")
            return [normalized(row) for row in con.execute(sql).fetchall()]

    def name(self, model: str) -> str:
        schema, alias = relations(self.site)[model]
        return f"{schema}.{alias}"

    def rows(self, model: str, columns: Sequence[str]) -> list[Row]:
        return sorted(self.query(f"select {', '.join(columns)} from {self.name(model)}"), key=repr)

    def feed_version(self, model: str) -> int:
        schema, alias = relations(self.site)[model]
        found = self.query(
            f"select coalesce(max(commit_version), 0) from {schema}.change_feed_commits where model_name = '{alias}'"
        )
        return int(found[0][0])

    def feed(self, model: str, after: int, upto: int) -> Feed:
        columns = [*bronze_columns(model), *CDC_COLUMNS]
        found = self.query(
            f"select _change_type, {', '.join(columns)} from {self.name(model)}__changes"
            f" where _commit_version > {after} and _commit_version <= {upto}"
        )
        return Counter((row[0], row[1:]) for row in found)


@dataclass(frozen=True)
class DeltaWarehouse:
    """Spark's Delta tables, read with delta-rs from the warehouse folder (no JVM)."""

    site: Dbt
    tables: Path

    def table(self, model: str) -> DeltaTable:
        schema, alias = relations(self.site)[model]
        return DeltaTable(str(self.tables / f"{schema}.db" / alias))

    def rows(self, model: str, columns: Sequence[str]) -> list[Row]:
        read = self.table(model).to_pyarrow_table(columns=list(columns))
        return sorted((normalized(tuple(row[column] for column in columns)) for row in read.to_pylist()), key=repr)

    def feed_version(self, model: str) -> int:
        return int(self.table(model).version())

    def state_versions(self) -> dict[str, int]:
        """The Delta version of the engine's checkpoint and feed positions (state tables no model selects)."""
        found = {path.name: path for path in self.tables.glob("*.db/*") if path.name in RECORDS_OF_PROGRESS}
        assert set(found) == set(RECORDS_OF_PROGRESS), sorted(found)
        return {name: int(DeltaTable(str(path)).version()) for name, path in found.items()}

    def feed(self, model: str, after: int, upto: int) -> Feed:
        columns = [*bronze_columns(model), *CDC_COLUMNS]
        reader = self.table(model).load_cdf(starting_version=after + 1, ending_version=upto)
        read = pa.table(reader)
        return Counter(
            (row["_change_type"], normalized(tuple(row[column] for column in columns))) for row in read.to_pylist()
        )


def bronze_columns(model: str) -> tuple[str, ...]:
    return next(table.column_names for table in TABLES if model == bronze_model(table))


def bronze_model(table: Table) -> str:
    return f"bronze_{SOURCE}__{table.name}"


def history_model(table: Table) -> str:
    return f"history_{SOURCE}__{table.name}"


# --- the checks ------------------------------------------------------------------------------------------------------

# rows each model holds once every phase is merged (counted from PHASES by hand, so an empty lake cannot pass)
FINAL_COUNTS = {
    "bronze_shop__customers": 7,
    "bronze_shop__order_lines": 5,
    "history_shop__customers": 23,
    "history_shop__order_lines": 15,
    "silver_shop__order_lines": 5,
}


def assert_models(warehouse: Warehouse, files: Sequence[LakeFile]) -> dict[str, list[Row]]:
    """Every model holds what the changes in `files` say; its rows by model."""
    held: dict[str, list[Row]] = {}
    for table in TABLES:
        bronze = bronze_model(table)
        held[bronze] = warehouse.rows(bronze, [*table.column_names, *CDC_COLUMNS])
        expected = sorted(expected_bronze(files, table).values(), key=repr)
        assert held[bronze] == expected, f"{bronze}: held {held[bronze]}\nexpected {expected}"
        history = history_model(table)
        held[history] = warehouse.rows(history, [*table.column_names, *HISTORY_COLUMNS])
        expected = expected_history(files, table)
        assert held[history] == expected, f"{history}: held {held[history]}\nexpected {expected}"
    # the consumer of Bronze's feed is Bronze, deletes applied
    held["silver_shop__order_lines"] = warehouse.rows("silver_shop__order_lines", SILVER_COLUMNS)
    expected = sorted((row[:-1] for row in expected_bronze(files, ORDER_LINES).values()), key=repr)
    assert held["silver_shop__order_lines"] == expected
    assert all(held.values()), {model: len(rows) for model, rows in held.items()}
    return held


def assert_feeds(
    warehouse: Warehouse, before: Sequence[LakeFile], after: Sequence[LakeFile], versions: dict[str, int]
) -> dict[str, int]:
    """Each Bronze model's feed since `versions` holds exactly the change from the state of `before` to the state of
    `after`; the feed versions now."""
    now: dict[str, int] = {}
    for table in TABLES:
        model = bronze_model(table)
        now[model] = warehouse.feed_version(model)
        expected = expected_feed(expected_bronze(before, table), expected_bronze(after, table))
        assert expected, f"{model}: the build changed nothing, its feed proves little"
        held = warehouse.feed(model, versions[model], now[model])
        assert held == expected, f"{model}: feed {sorted(held.items(), key=repr)}\nexpected {sorted(expected.items())}"
    return now


def assert_nothing_new_keeps_every_model(site: Dbt, warehouse: Warehouse, held: dict[str, list[Row]]) -> None:
    """A build with no new file: every model keeps its last build (lago_cdc: materializations/nothing_new.sql), its
    log says so, and its rows and its change feed are as they were."""
    versions = {bronze_model(table): warehouse.feed_version(bronze_model(table)) for table in TABLES}
    site.build(check=True)
    results = site.artifact("run_results.json")["results"]
    messages = {r["unique_id"].split(".")[-1]: r["message"] for r in results if r["unique_id"].startswith("model.")}
    assert messages == dict.fromkeys(held, "NOTHING NEW"), messages
    assert assert_models(warehouse, phases_up_to(3)) == held
    assert {model: warehouse.feed_version(model) for model in versions} == versions


def phases_up_to(number: int) -> list[LakeFile]:
    return [file for phase in PHASES[:number] for file in phase]


def test_the_lake_exercises_what_the_engine_must_get_right() -> None:
    """The test's own expectations: the cases the lake was written for are in it."""
    everything = phases_up_to(3)
    assert {model: len(rows) for model, rows in expected_rows(everything).items()} == FINAL_COUNTS
    customers = logged_changes(everything, CUSTOMERS)
    # customer 1: updated and deleted at one time, the delete written first: deleted
    assert [change.operation for change in customers[(1,)][-2:]] == ["U", "D"]
    assert (1,) not in expected_bronze(everything, CUSTOMERS)
    # the late file's update of customer 4 is history only; customer 5's does not bring it back
    assert expected_bronze(everything, CUSTOMERS)[(4,)][2] == 470
    assert (5,) not in expected_bronze(everything, CUSTOMERS)
    # the late file's update of customer 3 is newer than what Bronze held: it applies
    assert expected_bronze(everything, CUSTOMERS)[(3,)][-1].endswith("customers_20260302_200000_000000.parquet")
    late_feed = expected_feed(expected_bronze(phases_up_to(2), CUSTOMERS), expected_bronze(everything, CUSTOMERS))
    assert sorted(Counter(kind for kind, _ in late_feed.elements()).items()) == [
        ("insert", 2),
        ("update_postimage", 2),
        ("update_preimage", 2),
    ]


def packages_installed_in(folder: Path) -> dict[str, str | None]:
    """`dbt deps` links the package into `folder`, not into the package's own tree (where the link would lead back
    to the folder holding it)."""
    return {"DBT_PACKAGES_INSTALL_PATH": str(folder / "dbt_packages")}


def test_duckdb_builds_in_any_cadence_as_a_full_refresh(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    site = Dbt.at(tmp_path, lake, project=PROJECT, env=packages_installed_in(tmp_path))
    site("deps", check=True)
    assert (tmp_path / "dbt_packages" / "lago_cdc").resolve() == PROJECT.parent
    write_lake_identity(lake)
    warehouse = DuckDBWarehouse(site)
    versions: dict[str, int] = {}
    for number, phase in enumerate(PHASES, start=1):
        for file in phase:
            write_file(lake, file)
        site.build(check=True)
        held = assert_models(warehouse, phases_up_to(number))
        if number == 1:
            versions = {bronze_model(table): warehouse.feed_version(bronze_model(table)) for table in TABLES}
        else:
            versions = assert_feeds(warehouse, phases_up_to(number - 1), phases_up_to(number), versions)
    assert {model: len(rows) for model, rows in held.items()} == FINAL_COUNTS
    # the consumer read Bronze's feed up to its latest version
    schema, _ = relations(site)["bronze_shop__order_lines"]
    positions = warehouse.query(
        f"select producer_name, commit_version from {schema}.change_feed_positions"
        " where consumer_name = 'silver_shop__order_lines'"
    )
    assert positions == [("bronze_shop__order_lines", versions["bronze_shop__order_lines"])]
    assert_nothing_new_keeps_every_model(site, warehouse, held)

    site.build("--full-refresh", check=True)
    assert assert_models(warehouse, phases_up_to(3)) == held


@pytest.mark.spark
def test_spark_delta_builds_the_same_tables(tmp_path: Path) -> None:
    jars = jars_dir(profile_spark_parameters())
    ensure_spark_jars(jars)
    spark_warehouse = tmp_path / "spark"
    env = {
        **packages_installed_in(tmp_path),
        "SPARK_WAREHOUSE_DIR": str(spark_warehouse),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "LAGO_SPARK_JARS_DIR": str(jars),
    }
    lake = tmp_path / "lake"
    site = Dbt.at(tmp_path / "dbt", lake, project=PROJECT, target="spark", env=env)
    site("deps", check=True)
    write_lake_identity(lake)
    warehouse = DeltaWarehouse(site, spark_warehouse / "tables")

    # a first build of phases 1 and 2, then an incremental one with the late file
    for file in phases_up_to(2):
        write_file(lake, file)
    site.build(check=True)
    assert_models(warehouse, phases_up_to(2))
    versions = {bronze_model(table): warehouse.feed_version(bronze_model(table)) for table in TABLES}
    for file in PHASES[2]:
        write_file(lake, file)
    site.build(check=True)
    held = assert_models(warehouse, phases_up_to(3))
    assert_feeds(warehouse, phases_up_to(2), phases_up_to(3), versions)
    assert {model: len(rows) for model, rows in held.items()} == FINAL_COUNTS
    # with no new file the checkpoint and the feed positions have nothing to record: not even an empty Delta version
    # (on Spark each costs a statement of its own)
    states = warehouse.state_versions()
    assert_nothing_new_keeps_every_model(site, warehouse, held)
    assert warehouse.state_versions() == states
