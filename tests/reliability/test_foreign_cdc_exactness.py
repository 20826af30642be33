"""Change files of another tool (a table declaring `meta.cdc`): no change is dropped, none is merged without its key.

- Two exports of one key at the same time (the reference tool's `op` + `DtAtualizacao`, no sequence column; or
  Debezium's `ts_ms` + `lsn`) that differ in content are two changes: the later file wins in Bronze, history keeps
  both versions, the change feeds carry the update, and incremental builds in any cadence equal a --full-refresh.
- A file with a row without a primary-key value is refused before anything is merged, naming the file and the key
  column; once it is gone, the next build merges everything else.

Runs on a copy of the dbt project whose clientes declares the convention; the files are written by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from reliability_support import Recorder, warehouse_state
from support.dbt import Dbt, copy_project

from ingestion.duck import quote_identifier

pytestmark = pytest.mark.dbt

SOURCES_YAML = Path("models/bronze/loyalty/_loyalty__sources.yml")
BUILD = (
    "--select",
    "bronze_loyalty__clientes",
    "history_loyalty__clientes",
    "silver_loyalty__customers",
    "--indirect-selection",
    "cautious",
)
BRONZE = "bronze.bronze_loyalty__clientes"
HISTORY = "history.history_loyalty__clientes"
SILVER = "silver.silver_loyalty__customers"
COMPARED = (BRONZE, HISTORY, SILVER)
CLIENT_COLUMNS = {
    "idCliente": pa.string(),
    "flEmail": pa.int32(),
    "flTwitch": pa.int32(),
    "flYouTube": pa.int32(),
    "flBlueSky": pa.int32(),
    "flInstagram": pa.int32(),
    "qtdePontos": pa.int64(),
    "DtCriacao": pa.string(),
    "DtAtualizacao": pa.string(),
}


class Convention:
    """A foreign CDC convention: its meta.cdc declaration and the extra columns of a change row."""

    def __init__(self, name: str, declaration: dict[str, Any], columns: dict[str, pa.DataType]) -> None:
        self.name = name
        self.declaration = declaration
        self.columns = columns

    def row(self, op: str, key: str | None, points: int, at: str, lsn: int) -> dict[str, Any]:
        ms = 1_735_689_600_000 + 3_600_000 * int(at[11:13])  # `at` (an hour of 2025-01-01 UTC) in epoch ms
        codes = {"I": "c", "U": "u", "D": "d"} if "ts_ms" in self.columns else {"I": "I", "U": "U", "D": "D"}
        row: dict[str, Any] = {
            "op": codes[op],
            "idCliente": key,
            "flEmail": 1,
            "flTwitch": 0,
            "flYouTube": 0,
            "flBlueSky": 0,
            "flInstagram": 0,
            "qtdePontos": points,
            "DtCriacao": "2025-01-01 00:00:00.000",
            "DtAtualizacao": at,
        }
        if "ts_ms" in self.columns:
            row |= {"ts_ms": ms, "lsn": lsn}
        return row


REFERENCE = Convention(
    "reference tool (op, DtAtualizacao, no sequence)",
    {"operation_column": "op", "timestamp_column": "DtAtualizacao"},
    {"op": pa.string()},
)
DEBEZIUM = Convention(
    "Debezium (ts_ms, lsn)",
    {
        "operation_column": "op",
        "insert": ["c", "r"],
        "update": ["u"],
        "delete": ["d"],
        "timestamp_column": "ts_ms",
        "timestamp_epoch_unit": "ms",
        "sequence_column": "lsn",
    },
    {"op": pa.string(), "ts_ms": pa.int64(), "lsn": pa.int64()},
)

T0 = "2025-01-01 01:00:00.000"
T1 = "2025-01-01 02:00:00.000"


def file_rows(convention: Convention) -> list[tuple[str, list[dict[str, Any]]]]:
    """Three change files: inserts, then two exports of key `a` at the same time T1 (and, for Debezium, the same
    lsn) with different points. In the later file `a` is the first row, in the earlier one the second: neither
    the position alone nor the file alone may decide."""
    r = convention.row
    return [
        ("clientes_20250101_010000_000000.parquet", [r("I", "a", 10, T0, 1), r("I", "b", 5, T0, 2)]),
        ("clientes_20250101_020000_000000.parquet", [r("U", "b", 6, T1, 7), r("U", "a", 20, T1, 7)]),
        ("clientes_20250101_030000_000000.parquet", [r("U", "a", 30, T1, 7), r("U", "b", 6, T1, 7)]),
    ]


def write_file(lake: Path, name: str, rows: list[dict[str, Any]], convention: Convention) -> Path:
    schema = pa.schema(list(convention.columns.items()) + list(CLIENT_COLUMNS.items()))
    path = lake / "raw" / "loyalty" / "cdc" / "clientes" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def new_lake(root: Path) -> Path:
    lake = root / "lake"
    (lake / "_ingestion").mkdir(parents=True)
    (lake / "_ingestion" / "lake.json").write_text(json.dumps({"lake_id": f"foreign-{root.name}"}), "utf-8")
    return lake


def project_declaring(dest: Path, convention: Convention) -> Path:
    project = copy_project(dest)
    path = project / SOURCES_YAML
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    (table,) = (t for s in document["sources"] for t in s["tables"] if t["name"] == "clientes")
    table["meta"]["cdc"] = convention.declaration
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return project


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A project copy per convention (each parsed once, by its first test)."""
    root = tmp_path_factory.mktemp("projects")
    return {c.name: project_declaring(root / str(number), c) for number, c in enumerate((REFERENCE, DEBEZIUM))}


def rows(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[Any, ...]]:
    """Every row but the build's load time, columns by name, sorted."""
    columns = sorted(row[0] for row in con.execute(f"describe {relation}").fetchall() if row[0] != "_loaded_at")
    quoted = ", ".join(quote_identifier(column) for column in columns)
    return sorted(con.execute(f"select {quoted} from {relation}").fetchall(), key=repr)


def feed_updates(con: duckdb.DuckDBPyConnection, relation: str, key: str, value: str) -> list[tuple[Any, ...]]:
    return con.execute(
        f"select _change_type, {value} from {relation}__changes where {key} = 'a' and _change_type like 'update_%' "
        "order by _commit_version, _change_type"
    ).fetchall()


@pytest.mark.parametrize(
    ("convention", "cadence"),
    [(REFERENCE, "one build"), (REFERENCE, "a build per file"), (DEBEZIUM, "a build per file")],
    ids=["reference-one-build", "reference-build-per-file", "debezium-build-per-file"],
)
def test_distinct_changes_at_one_time_are_all_kept_in_any_cadence(
    convention: Convention, cadence: str, projects: dict[str, Path], tmp_path: Path, report: Recorder
) -> None:
    lake = new_lake(tmp_path)
    site = Dbt.at(tmp_path / "dbt", lake, project=projects[convention.name])
    for name, content in file_rows(convention):
        write_file(lake, name, content, convention)
        if cadence == "a build per file":
            site.build(*BUILD, check=True)
    if cadence == "one build":
        site.build(*BUILD, check=True)

    with site.connect() as con:
        bronze = con.execute(f'select "idCliente", "qtdePontos" from {BRONZE} order by 1').fetchall()
        versions = con.execute(
            f'select "qtdePontos", dbt_valid_to is null from {HISTORY} where "idCliente" = \'a\' '
            "order by dbt_valid_from, dbt_valid_to nulls last"
        ).fetchall()
        silver = con.execute(f"select customer_id, points_balance from {SILVER} order by 1").fetchall()
        bronze_feed = feed_updates(con, BRONZE, '"idCliente"', '"qtdePontos"')
        incremental = {relation: rows(con, relation) for relation in COMPARED}

    rebuilt = Dbt.at(tmp_path / "rebuilt", lake, project=projects[convention.name])
    rebuilt.work.mkdir()
    shutil.copy(site.database, rebuilt.database)
    rebuilt.build("--full-refresh", *BUILD, check=True)
    with rebuilt.connect() as con:
        full = {relation: rows(con, relation) for relation in COMPARED}

    lost = int(bronze != [("a", 30), ("b", 6)]) + max(0, 3 - len(versions))
    report.record(
        f"dbt: foreign CDC, {convention.name}: two exports of one key at one time, {cadence}",
        runs=1 if cadence == "one build" else 3,
        expected=3,
        lost=lost,
        duplicated=max(0, len(versions) - 3),
        note=f"Bronze {bronze}; history of a: {[points for points, _ in versions]}",
    )
    # the later file's change wins; no change is dropped from Bronze, history, Silver or the feed
    assert bronze == [("a", 30), ("b", 6)]
    assert versions == [(10, False), (20, False), (30, True)]
    assert silver == [("a", 30), ("b", 6)]
    if cadence == "a build per file":
        assert bronze_feed == [
            ("update_postimage", 20),
            ("update_preimage", 10),
            ("update_postimage", 30),
            ("update_preimage", 20),
        ]
    for relation in COMPARED:
        assert len(incremental[relation]) > 0, relation
        assert incremental[relation] == full[relation], f"{relation}: incremental builds differ from --full-refresh"


def test_a_file_with_a_null_key_is_refused_before_anything_is_merged(
    projects: dict[str, Path], tmp_path: Path, report: Recorder
) -> None:
    convention = REFERENCE
    lake = new_lake(tmp_path)
    site = Dbt.at(tmp_path / "dbt", lake, project=projects[convention.name])
    (first, inserts), (second, updates), _ = file_rows(convention)
    write_file(lake, first, inserts, convention)
    site.build(*BUILD, check=True)

    # a good file and, after it, a file with one row without its key: neither is merged
    write_file(lake, second, updates, convention)
    bad_name = "clientes_20250101_040000_000000.parquet"
    bad = write_file(
        lake, bad_name, [convention.row("U", "b", 8, T1, 9), convention.row("I", None, 1, T1, 9)], convention
    )
    before = warehouse_state(site.database)
    build = site.build(*BUILD)
    after = warehouse_state(site.database)
    errors = [line.strip() for line in build.stdout.splitlines() if bad_name in line]
    report.record(
        "dbt: foreign CDC: a change file with a NULL key",
        runs=1,
        expected=sum(len(rows) for rows in before.values()),
        lost=0 if after == before else 1,
        note=f"exit {build.returncode}; " + (f"the error: {errors[0][:200]}" if errors else "the file is not named"),
    )
    assert build.returncode != 0, build.stdout[-3000:]
    assert errors, build.stdout[-3000:]
    assert any("key idCliente" in line for line in errors), errors
    assert after == before, "a refused build changed the warehouse"

    bad.unlink()
    site.build(*BUILD, check=True)
    with site.connect() as con:
        bronze = con.execute(f'select "idCliente", "qtdePontos" from {BRONZE} order by 1').fetchall()
        null_keys = con.execute(f'select count(*) from {BRONZE} where "idCliente" is null').fetchone()
    assert bronze == [("a", 20), ("b", 6)]
    assert null_keys == (0,)
