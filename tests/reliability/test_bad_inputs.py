"""Bad inputs: each is a clear error naming the table, column, file or row, a non-zero exit, and the lake unchanged.

"Unchanged" is checked byte for byte: every key of the lake and the SHA-256 of its content, before and after.
Each case runs against a copy of one lake that already holds a capture of clientes and produtos.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from reliability_support import (
    CLIENTES_HEADER,
    PRODUTOS_HEADER,
    ChangeRow,
    History,
    LocalView,
    Recorder,
    S3View,
    change_rows,
    compare,
    csv_args,
    fingerprint,
    ingest,
)

from ingestion.catalog import load_catalog
from ingestion.errors import CatalogError

GOOD_ROW = "c9000;1;0;1;;0;10;2024-01-01 10:00:00.000;2024-02-01 10:00:00.000"
PRODUTOS = f"{PRODUTOS_HEADER}\n1;Produto 1;;chat\n2;Produto 2;Descrição;rpg\n"


@dataclass(frozen=True)
class BadInput:
    name: str
    clientes: bytes
    exit_code: int
    says: tuple[str, ...]


def _clientes(*rows: str, header: str = CLIENTES_HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


CASES = [
    BadInput(
        "ragged row (one field too many)",
        _clientes(GOOD_ROW, GOOD_ROW.replace("c9000", "c9001") + ";extra"),
        3,
        ("loyalty.clientes", "clientes.csv", "line 3", "10 fields where the header has 9"),
    ),
    BadInput(
        "ragged row (fields missing)",
        _clientes(GOOD_ROW, "c9001;1;0;1"),
        3,
        ("loyalty.clientes", "clientes.csv", "line 3", "4 fields where the header has 9"),
    ),
    BadInput(
        "wrong separator (',' for ';')",
        _clientes(GOOD_ROW.replace(";", ","), header=CLIENTES_HEADER.replace(";", ",")),
        3,
        ("loyalty.clientes", "clientes.csv", "separator", "';'"),
    ),
    BadInput(
        "missing key column",
        _clientes(
            GOOD_ROW.split(";", 1)[1], header=CLIENTES_HEADER.split(";", 1)[1]
        ),  # idCliente dropped from header and rows
        3,
        ("loyalty.clientes", "clientes.csv", "missing column(s) idCliente"),
    ),
    BadInput(
        "NULL key",
        _clientes(GOOD_ROW, ";" + GOOD_ROW.split(";", 1)[1]),
        3,
        ("loyalty.clientes", "clientes.csv", "line 3", "NULL", "idCliente"),
    ),
    BadInput(
        "duplicate keys",
        _clientes(GOOD_ROW, GOOD_ROW.replace(";10;", ";11;")),
        3,
        ("loyalty.clientes", "idCliente='c9000'", "2 rows"),
    ),
    BadInput("empty file", b"", 3, ("loyalty.clientes", "clientes.csv", "empty")),
    BadInput("header only", _clientes(), 3, ("loyalty.clientes", "clientes.csv", "no rows")),
    BadInput(
        "dropped column",
        _clientes(
            "c9000;1;0;1;;0;2024-01-01 10:00:00.000;2024-02-01 10:00:00.000",
            header=CLIENTES_HEADER.replace(";qtdePontos", ""),
        ),
        3,
        ("loyalty.clientes", "clientes.csv", "missing column(s) qtdePontos"),
    ),
    BadInput(
        "text in an integer column",
        _clientes(GOOD_ROW, GOOD_ROW.replace("c9000", "c9001").replace(";10;", ";dez;")),
        3,
        ("loyalty.clientes", "clientes.csv", "line 3", "qtdePontos", "'dez'", "bigint"),
    ),
    BadInput(
        "non-UTF-8 bytes",
        _clientes(GOOD_ROW) + "c9001;1;0;1;;0;10;Conceição;x\n".encode("latin-1"),
        3,
        ("loyalty.clientes", "clientes.csv", "line 3", "UTF-8"),
    ),
    BadInput(
        "duplicate header names",
        _clientes(GOOD_ROW + ";1", header=CLIENTES_HEADER + ";qtdePontos"),
        3,
        ("loyalty.clientes", "clientes.csv", "line 1", "qtdePontos more than once"),
    ),
    BadInput(
        "a quoted field never closed",
        _clientes(GOOD_ROW, GOOD_ROW.replace("c9000", '"c9001')),
        3,
        ("loyalty.clientes", "clientes.csv", "line 3", "never closed"),
    ),
    *(
        BadInput(
            f"integer column given {text!r}",
            _clientes(GOOD_ROW, GOOD_ROW.replace("c9000", "c9001").replace(";10;", f";{text};")),
            3,
            ("loyalty.clientes", "clientes.csv", "line 3", "qtdePontos", repr(text), "bigint"),
        )
        # DuckDB's cast alone rounds the first four and reads the others as numbers; 1.234 is pt-BR for 1234
        for text in ("1.5", "2.5", "1.4", "1e3", "0x1F", "1_000", "1.234", "1,0")
    ),
    BadInput(
        "column name with quotes and SQL in the header",
        _clientes(GOOD_ROW + ";1", header=CLIENTES_HEADER + ';"x""; drop table clientes; --"'),
        3,
        ("loyalty.clientes", "clientes.csv", "drop table clientes", "not declared"),
    ),
]


@pytest.fixture(scope="module")
def base_lake(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("bad-inputs") / "lake"
    result = ingest(lake, *csv_args(history.folders[0]))
    assert result.returncode == 0, result.stderr
    return lake


@pytest.fixture
def lake(base_lake: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(base_lake, copy)
    return copy


def _error_line(stderr: str) -> str:
    errors = [line.split(" ERROR ", 1)[1] for line in stderr.splitlines() if " ERROR " in line]
    return errors[-1] if errors else stderr.strip()[-200:]


@dataclass(frozen=True)
class Before:
    files: dict[str, str]
    rows: Counter[ChangeRow]

    @classmethod
    def of(cls, lake: Path) -> Before:
        return cls(fingerprint(LocalView(lake)), change_rows(LocalView(lake)))


def _check_unchanged(lake: Path, before: Before, report: Recorder, scenario: str, code: int, msg: str) -> None:
    rows = compare(before.rows, change_rows(LocalView(lake)))
    report.record(
        scenario,
        runs=1,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note=f"exit {code}: {msg[:90]}",
    )
    after = fingerprint(LocalView(lake))
    changed = sorted(k for k in before.files.keys() | after.keys() if before.files.get(k) != after.get(k))
    assert not changed, f"the failed run changed the lake: {changed}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_csv_is_a_clear_error_and_the_lake_is_unchanged(
    case: BadInput, lake: Path, tmp_path: Path, report: Recorder
) -> None:
    folder = tmp_path / "snapshots"
    folder.mkdir()
    (folder / "clientes.csv").write_bytes(case.clientes)
    (folder / "produtos.csv").write_text(PRODUTOS, encoding="utf-8")
    before = Before.of(lake)
    result = ingest(lake, *csv_args(folder, tables="clientes"))
    message = _error_line(result.stderr)
    _check_unchanged(lake, before, report, f"bad input: {case.name}", result.returncode, message)
    assert result.returncode == case.exit_code, result.stderr
    assert "Traceback" not in result.stderr
    for expected in case.says:
        assert expected in message, f"{expected!r} not in {message!r}"


NAMES = ['cli"entes', "cli entes", "..", "../clientes", "loyalty/clientes", "clientes;drop table clientes", "x' or '1"]


@pytest.mark.parametrize("option", ["--tables", "--source"])
def test_names_that_are_not_identifiers_are_refused_on_the_command_line(
    option: str, lake: Path, history: History, report: Recorder
) -> None:
    before = Before.of(lake)
    messages = []
    for name in NAMES:
        args = ["--from", "csv", "--path", str(history.folders[1]), option, name]
        result = ingest(lake, *args)
        assert result.returncode == 2, result.stderr
        message = _error_line(result.stderr)
        assert repr(name) in message and "not a plain identifier" in message, message
        messages.append(message)
    _check_unchanged(lake, before, report, f"names with quotes, spaces, `..`, `/`, SQL via {option}", 2, messages[0])


def _sources_yaml(tmp_path: Path, **overrides: Any) -> Path:
    table: dict[str, Any] = {
        "name": overrides.get("table", "clientes"),
        "meta": {"primary_key": [overrides.get("key", "idCliente")]},
        "columns": [
            {"name": overrides.get("key_column", "idCliente"), "data_type": "varchar"},
            {"name": overrides.get("column", "qtdePontos"), "data_type": "bigint"},
        ],
    }
    document = {"version": 2, "sources": [{"name": overrides.get("source", "loyalty"), "tables": [table]}]}
    path = tmp_path / "_bad__sources.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.mark.parametrize("field", ["source", "table", "column", "key_column"])
def test_names_that_are_not_identifiers_are_refused_in_the_sources_yaml(
    field: str, tmp_path: Path, report: Recorder
) -> None:
    refused = []
    for name in NAMES:
        overrides = {field: name, "key": name} if field == "key_column" else {field: name}
        with pytest.raises(CatalogError) as error:
            load_catalog([_sources_yaml(tmp_path, **overrides)])
        message = str(error.value)
        assert "_bad__sources.yml" in message and repr(name) in message, message
        refused.append(name)
    report.record(f"names with quotes, spaces, `..`, `/`, SQL as a {field} in a sources YAML", runs=len(refused))
    assert refused == NAMES


def test_a_corrupt_snapshot_in_the_lake_is_a_clear_error(lake: Path, history: History, report: Recorder) -> None:
    (snapshot,) = (lake / "_ingestion/loyalty/clientes/snapshots").glob("*.parquet")
    snapshot.write_bytes(b"PAR1 not really parquet")
    before = Before.of(lake)
    result = ingest(lake, *csv_args(history.folders[1], tables="clientes"))
    message = _error_line(result.stderr)
    _check_unchanged(lake, before, report, "corrupt Parquet snapshot in the lake", result.returncode, message)
    assert result.returncode == 3, result.stderr
    assert "loyalty.clientes" in message


def test_a_corrupt_snapshot_error_names_the_lake_file(lake: Path, history: History) -> None:
    (snapshot,) = (lake / "_ingestion/loyalty/clientes/snapshots").glob("*.parquet")
    snapshot.write_bytes(b"PAR1 not really parquet")
    result = ingest(lake, *csv_args(history.folders[1], tables="clientes"))
    assert f"_ingestion/loyalty/clientes/snapshots/{snapshot.name}" in _error_line(result.stderr)


def test_a_corrupt_state_document_is_a_clear_error(lake: Path, history: History, report: Recorder) -> None:
    (lake / "_ingestion/loyalty/clientes/state.json").write_text('{"last_sequence": ', encoding="utf-8")
    before = Before.of(lake)
    result = ingest(lake, *csv_args(history.folders[1], tables="clientes"))
    message = _error_line(result.stderr)
    _check_unchanged(lake, before, report, "corrupt state.json in the lake", result.returncode, message)
    assert result.returncode == 4, result.stderr
    assert "_ingestion/loyalty/clientes/state.json is unreadable" in message


def test_a_bad_table_after_a_good_one_leaves_the_lake_unchanged(
    lake: Path, history: History, tmp_path: Path, report: Recorder
) -> None:
    folder = tmp_path / "snapshots"
    shutil.copytree(history.folders[1], folder)
    (folder / "produtos.csv").write_text(PRODUTOS + "2;Produto 2 again;;rpg\n", encoding="utf-8")  # duplicate key
    before = Before.of(lake)
    result = ingest(lake, *csv_args(folder, tables="clientes,produtos"))
    _check_unchanged(
        lake,
        before,
        report,
        "good clientes, then produtos with a duplicate key",
        result.returncode,
        _error_line(result.stderr),
    )
    assert result.returncode == 3


# -- S3 ------------------------------------------------------------------------------------------------------------


def test_unreachable_s3_endpoint_is_a_clear_error(history: History, report: Recorder) -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIAUNREACHABLE",
        "AWS_SECRET_ACCESS_KEY": "unreachable-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "2",
    }
    result = ingest("s3://lake/prefix", *csv_args(history.folders[0]), env=env)
    message = _error_line(result.stderr)
    report.record("unreachable S3 endpoint", runs=1, note=f"exit {result.returncode}: {message[:90]}")
    assert result.returncode == 4, result.stderr
    assert "s3://lake/prefix/" in message and "127.0.0.1:9" in message
    assert "Traceback" not in result.stderr


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["secret key", "access key"])
def test_wrong_s3_credentials_are_a_clear_error_and_the_lake_is_unchanged(
    wrong: str, history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    assert ingest(s3_lake_env, *csv_args(history.folders[0])).returncode == 0
    view = S3View.of(seaweedfs.client(), s3_lake_env)
    before, before_rows = fingerprint(view), change_rows(view)
    env = (
        {"AWS_SECRET_ACCESS_KEY": "wrong-" + seaweedfs.secret_key}
        if wrong == "secret key"
        else {"AWS_ACCESS_KEY_ID": "AKIAWRONGKEY0000"}
    )
    result = ingest(s3_lake_env, *csv_args(history.folders[1]), env={**env, "AWS_MAX_ATTEMPTS": "2"})
    message = _error_line(result.stderr)
    rows = compare(before_rows, change_rows(view))
    report.record(
        f"wrong S3 {wrong}",
        runs=1,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note=f"exit {result.returncode}: {message[:90]}",
    )
    assert result.returncode == 4, result.stderr
    assert s3_lake_env in message
    assert ("SignatureDoesNotMatch" if wrong == "secret key" else "InvalidAccessKeyId") in message
    assert fingerprint(view) == before


# -- exact reading: long lines, strict types, offsets --------------------------------------------------------------

LONG = 33 << 20  # DuckDB's read_csv silently drops a last line of 32 MiB or more


@pytest.mark.parametrize("where", ["last line", "middle line"])
def test_a_very_long_line_is_read_not_dropped(
    where: str, lake: Path, history: History, tmp_path: Path, report: Recorder
) -> None:
    folder = tmp_path / "snapshots"
    shutil.copytree(history.folders[0], folder)
    path = folder / "clientes.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    position = len(lines) - 1 if where == "last line" else len(lines) // 2
    key = lines[position].split(";", 1)[0]
    fields = lines[position].split(";")
    fields[-1] = "2024-03-01 " + "x" * (LONG if where == "last line" else 3 << 20)
    lines[position] = ";".join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = change_rows(LocalView(lake))
    result = ingest(lake, *csv_args(folder, tables="clientes"))
    assert result.returncode == 0, result.stderr[-2000:]
    new = change_rows(LocalView(lake)) - before
    operations = Counter((row[2], row[4]) for row in new)  # (operation, idCliente)
    report.record(
        f"CSV whose {where} is {'33' if where == 'last line' else '3'} MiB long",
        runs=1,
        expected=1,
        lost=operations[("D", key)],
        note=f"exit {result.returncode}; the long row is an update, not a delete",
    )
    assert operations == Counter({("U", key): 1}), operations


PRODUCT_ITEM_HEADER = "transaction_datetime,transaction_date,purchase_id,product_id,item_quantity,purchase_value"


@pytest.mark.parametrize(
    ("column", "text", "type_name"),
    [
        ("purchase_value", "50.005", "decimal(18,2)"),
        ("purchase_value", "1.234,50", "decimal(18,2)"),
        ("transaction_datetime", "2023-01-01 10:00:00.1234567", "timestamp"),
        ("transaction_datetime", "01/02/2023 10:00", "timestamp"),
        ("transaction_date", "2023-1-2", "date"),
        ("item_quantity", "2.0", "integer"),
    ],
)
def test_decimals_timestamps_and_dates_are_checked_exactly(
    column: str, text: str, type_name: str, tmp_path: Path, report: Recorder
) -> None:
    from ingestion.errors import BadValueError
    from ingestion.readers.csv import csv_to_parquet

    table = load_catalog().source("hotmart").table("product_item")
    good = {
        "transaction_datetime": "2023-01-01 10:00:00",
        "transaction_date": "2023-01-01",
        "purchase_id": "1",
        "product_id": "7",
        "item_quantity": "1",
        "purchase_value": "50.00",
    }
    header = [c for c in PRODUCT_ITEM_HEADER.split(",") if c in table.column_names]
    assert sorted(header) == sorted(table.column_names)
    row = {**good, column: text}
    path = tmp_path / "product_item.csv"
    sep = table.csv_separator
    lines = [sep.join(header), sep.join(good[c] for c in header), sep.join(f'"{row[c]}"' for c in header)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BadValueError) as error:
        csv_to_parquet(table, path, tmp_path / "out.parquet")
    found = error.value
    assert (found.table, found.file, found.line, found.column, found.value, found.data_type) == (
        "hotmart.product_item",
        "product_item.csv",
        3,
        column,
        text,
        type_name,
    )
    report.record(f"bad input: {type_name} column given {text!r}", runs=1, note=str(found)[:90])


def test_a_timestamp_with_an_offset_is_converted_to_utc(tmp_path: Path, report: Recorder) -> None:
    import datetime as dt

    import pyarrow.parquet as pq

    from ingestion.readers.csv import csv_to_parquet

    table = load_catalog().source("hotmart").table("product_item")
    header = [c for c in PRODUCT_ITEM_HEADER.split(",") if c in table.column_names]
    values = {
        "transaction_datetime": "2023-01-01 22:30:00-03:00",
        "transaction_date": "2023-01-01",
        "purchase_id": "1",
        "product_id": "7",
        "item_quantity": "1",
        "purchase_value": "50.5",
    }
    path = tmp_path / "product_item.csv"
    sep = table.csv_separator
    path.write_text(sep.join(header) + "\n" + sep.join(values[c] for c in header) + "\n", encoding="utf-8")
    (row,) = pq.read_table(csv_to_parquet(table, path, tmp_path / "out.parquet")).to_pylist()
    # 22:30 at UTC-3 is 01:30 UTC the next day: the instant is kept, not the wall time
    assert row["transaction_datetime"] == dt.datetime(2023, 1, 2, 1, 30)
    report.record("timestamp with a UTC offset", runs=1, note="converted to UTC: 22:30-03:00 -> 01:30 next day")


# -- the lake's own state, changed by hand --------------------------------------------------------------------------


@pytest.mark.parametrize("removed", ["state.json", "current snapshot"])
def test_missing_state_next_to_published_data_is_an_error_not_a_new_table(
    removed: str, lake: Path, history: History, report: Recorder
) -> None:
    folder = lake / "_ingestion/loyalty/clientes"
    if removed == "state.json":
        (folder / "state.json").unlink()
    else:
        (snapshot,) = (folder / "snapshots").glob("*.parquet")
        snapshot.unlink()
    before = Before.of(lake)
    result = ingest(lake, *csv_args(history.folders[1], tables="clientes"))
    message = _error_line(result.stderr)
    _check_unchanged(lake, before, report, f"{removed} of a captured table deleted", result.returncode, message)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert "loyalty.clientes" in message and "Repair:" in message and "--full-refresh" in message
    assert ("state.json is missing" if removed == "state.json" else "which is missing") in message
    # no second full load: the only full-load file is the first capture's
    assert len(list((lake / "raw/loyalty/full-load/clientes").glob("*.parquet"))) == 1


def test_a_foreign_parquet_file_as_the_snapshot_is_named(
    lake: Path, history: History, tmp_path: Path, report: Recorder
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (snapshot,) = (lake / "_ingestion/loyalty/clientes/snapshots").glob("*.parquet")
    pq.write_table(pa.table({"id": [1, 2], "name": ["a", "b"]}), snapshot)  # another tool's file, valid Parquet
    before = Before.of(lake)
    result = ingest(lake, *csv_args(history.folders[1], tables="clientes"))
    message = _error_line(result.stderr)
    _check_unchanged(lake, before, report, "foreign Parquet file of another schema as the snapshot", 3, message)
    assert result.returncode == 3, result.stderr
    assert snapshot.name in message and "key column idCliente is missing" in message
