"""The CSV folder reader: typed output, and a clear error for each kind of bad file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.catalog import load_catalog
from ingestion.errors import BadCsvError, BadValueError, SourceChangedError
from ingestion.readers import base
from ingestion.readers import csv as csv_reader
from ingestion.readers.base import CaptureContext
from ingestion.readers.csv import CsvFolderReader, csv_snapshot, csv_to_parquet

PRODUTOS = load_catalog().source("loyalty").table("produtos")
HEADER = "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto"


def read(tmp_path: Path, content: bytes | str) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    (folder / "produtos.csv").write_bytes(data)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return CsvFolderReader(folder).read(PRODUTOS, CaptureContext(work)).to_parquet(work / "out.parquet", PRODUTOS)


def test_reads_declared_types_and_empty_fields_as_null(tmp_path: Path) -> None:
    out = read(tmp_path, f'{HEADER}\n1;ChatMessage;;chat\n2;"Lista; de presença";Uma descrição;present\n')
    table = pq.read_table(out)
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in PRODUTOS.schema]
    assert table.to_pylist() == [
        {
            "IdProduto": 1,
            "DescNomeProduto": "ChatMessage",
            "DescDescricaoProduto": None,
            "DescCategoriaProduto": "chat",
        },
        {
            "IdProduto": 2,
            "DescNomeProduto": "Lista; de presença",
            "DescDescricaoProduto": "Uma descrição",
            "DescCategoriaProduto": "present",
        },
    ]
    assert table.schema.field("IdProduto").type == pa.int32()


def test_columns_may_come_in_any_order(tmp_path: Path) -> None:
    out = read(tmp_path, "DescCategoriaProduto;IdProduto;DescNomeProduto;DescDescricaoProduto\nchat;7;X;\n")
    assert pq.read_table(out).column_names == PRODUTOS.column_names


@pytest.mark.parametrize(
    ("content", "kind", "line", "columns"),
    [
        (b"", "empty", None, ()),
        (f"{HEADER}\n", "no-rows", None, ()),
        (f"{HEADER}\n1;a;b;c\n2;a;b\n", "fields", 3, ()),
        (HEADER.replace(";", ",") + "\n1,a,b,c\n", "separator", 1, (HEADER.replace(";", ","),)),
        ("IdProduto;DescNomeProduto;DescCategoriaProduto\n1;a;c\n", "missing-columns", 1, ("DescDescricaoProduto",)),
        (f"{HEADER};Extra\n1;a;b;c;d\n", "extra-columns", 1, ("Extra",)),
        (f"{HEADER};IdProduto\n1;a;b;c;2\n", "repeated-columns", 1, ("IdProduto",)),
        (f"{HEADER}\n1;a;b;c\n".encode() + b"2;caf\xe9;b;c\n", "encoding", 3, ()),
        (f'{HEADER}\n1;a;b;c\n2;"a;b;c\n', "unclosed-quote", 3, ()),
    ],
    ids=[
        "empty",
        "header-only",
        "ragged",
        "wrong-separator",
        "missing-column",
        "extra-column",
        "repeated-column",
        "not-utf8",
        "unclosed-quote",
    ],
)
def test_bad_files_name_table_file_and_problem(
    tmp_path: Path, content: bytes | str, kind: str, line: int | None, columns: tuple[str, ...]
) -> None:
    with pytest.raises(BadCsvError) as refused:
        read(tmp_path, content)
    error = refused.value
    assert (error.table, error.file, error.kind, error.line, error.columns) == (
        "loyalty.produtos",
        "produtos.csv",
        kind,
        line,
        columns,
    )
    assert error.exit_code == 3


def test_a_value_not_of_its_type_names_line_column_and_value(tmp_path: Path) -> None:
    with pytest.raises(BadValueError) as refused:
        read(tmp_path, f"{HEADER}\n1;a;b;c\ndois;a;b;c\n")
    error = refused.value
    assert (error.table, error.file, error.line, error.column, error.value, error.data_type) == (
        "loyalty.produtos",
        "produtos.csv",
        3,
        "IdProduto",
        "dois",
        "integer",
    )


CLIENTES = load_catalog().source("loyalty").table("clientes")
CLIENTES_HEADER = ";".join(CLIENTES.column_names)


def read_clientes(tmp_path: Path, lines: list[str]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    (folder / "clientes.csv").write_text("\n".join([CLIENTES_HEADER, *lines]) + "\n")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return CsvFolderReader(folder).read(CLIENTES, CaptureContext(work)).to_parquet(work / "out.parquet", CLIENTES)


def test_one_scan_reports_the_first_bad_value_of_every_column(tmp_path: Path) -> None:
    when = "2025-01-01 00:00:00.000;2025-01-01 00:00:00.000"
    lines = [f"a;1;0;0;0;0;7;{when}", f"b;1;1.5;0;0;0;7;{when}", f"c;1;0;0;0;0;1e3;{when}", f"d;1;2.5;0;0;0;7;{when}"]
    with pytest.raises(BadValueError) as caught:
        read_clientes(tmp_path, lines)
    error = caught.value
    assert (error.table, error.file, error.line, error.column, error.value) == (
        "loyalty.clientes",
        "clientes.csv",
        3,
        "flTwitch",
        "1.5",
    )
    assert error.also == "column qtdePontos line 4: '1e3'"


def test_blank_lines_and_values_spanning_lines_are_read_whole(tmp_path: Path) -> None:
    # the fast read's line count cannot match such a file: the careful path confirms every record instead
    row = "0;0;0;0;0;5;2025-01-01 00:00:00.000;2025-01-01 00:00:00.000"
    out = read_clientes(tmp_path, [f"a;{row}", "", f'"b\nc";{row}', f"d;{row}"])
    assert pq.read_table(out).column("idCliente").to_pylist() == ["a", "b\nc", "d"]


def test_a_good_file_is_read_once_by_duckdb(tmp_path: Path) -> None:
    row = "1;0;1;0;0;12;2025-01-01 00:00:00.000;2025-01-02 00:00:00.000"
    out = read_clientes(tmp_path, [f"k{i};{row}" for i in range(1000)])
    # the careful path would leave its text copy aside; the one pass writes the typed file directly
    assert not (out.parent / "out.text.parquet").exists()
    assert pq.read_table(out).num_rows == 1000


def test_integers_in_any_exact_form_are_read(tmp_path: Path) -> None:
    # the one pass takes the canonical text at once; `+5`, `007`, `-0` and padding are checked by the pattern
    when = "2025-01-01 00:00:00.000;2025-01-01 00:00:00.000"
    lines = [f"a;+5;007;-0; 7 ;1;-12;{when}", f"b;1;0;0;0;0;9223372036854775807;{when}"]
    table = pq.read_table(read_clientes(tmp_path, lines))
    assert table.column("flEmail").to_pylist() == [5, 1]
    assert table.column("flTwitch").to_pylist() == [7, 0]
    assert table.column("flYouTube").to_pylist() == [0, 0]
    assert table.column("flBlueSky").to_pylist() == [7, 0]
    assert table.column("qtdePontos").to_pylist() == [-12, 9223372036854775807]


@pytest.mark.parametrize("path", ["one pass", "careful"])
def test_a_quoted_empty_field_is_the_empty_text_and_an_empty_field_is_null(tmp_path: Path, path: str) -> None:
    """Text keeps what the file says; in a column of numbers an empty field is NULL, quoted or not. The careful
    path (forced by a blank line, which the one pass's line count cannot account for) reads the same values."""
    when = "2025-01-01 00:00:00.000"
    lines = [
        f'"a";1;0;0;0;0;"";{when};""',  # a quoted empty number is NULL; a quoted empty text is ''
        f"b;1;0;0;0;0;;{when};",  # empty fields: NULL
        f'c;1;0;0;0;0;" 7 ";{when};" "',  # a blank is text, not empty
        *([""] if path == "careful" else []),
        f"d;1;0;0;0;0;3;{when};{when}",
    ]
    table = pq.read_table(read_clientes(tmp_path, lines))
    assert table.num_rows == 4
    assert table.column("qtdePontos").to_pylist() == [None, None, 7, 3]
    # DtAtualizacao is declared as text in the loyalty source
    assert CLIENTES.column("DtAtualizacao").data_type == "varchar"
    assert table.column("DtAtualizacao").to_pylist() == ["", None, " ", when]


@pytest.mark.parametrize("path", ["one pass", "careful"])
def test_an_empty_text_key_is_refused_like_a_null_one(tmp_path: Path, path: str) -> None:
    when = "2025-01-01 00:00:00.000"
    lines = [f"a;1;0;0;0;0;1;{when};{when}", *([""] if path == "careful" else []), f'"";1;0;0;0;0;1;{when};{when}']
    with pytest.raises(BadCsvError) as error:
        read_clientes(tmp_path, lines)
    assert (error.value.kind, error.value.columns) == ("empty-key", ("idCliente",))
    assert (error.value.table, error.value.line) == ("loyalty.clientes", 4 if path == "careful" else 3)


def test_a_file_changed_while_it_is_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot knows the version of the file it was taken from; the events reader's one read to Parquet
    (`csv_to_parquet`) checks it after the read too."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "produtos.csv"
    path.write_text(f"{HEADER}\n1;Um;;chat\n", encoding="utf-8")
    snapshot = csv_snapshot(PRODUTOS, path, tmp_path / "out.parquet")
    replacement = folder / "produtos.csv.part"
    replacement.write_text(f"{HEADER}\n1;Um;;chat\n2;Dois;;chat\n", encoding="utf-8")
    replacement.replace(path)
    with pytest.raises(SourceChangedError) as error:
        snapshot.verify_unchanged()
    assert (error.value.table, error.value.file) == ("loyalty.produtos", "produtos.csv")
    assert "replaced by another file" in error.value.change

    real = base.copy_to_parquet

    def copy_then_rewrite(*args: Any, **kwargs: Any) -> int:
        rows = real(*args, **kwargs)
        path.write_text(f"{HEADER}\n1;Um mudado;;chat\n", encoding="utf-8")
        return rows

    monkeypatch.setattr(base, "copy_to_parquet", copy_then_rewrite)
    with pytest.raises(SourceChangedError):
        csv_to_parquet(PRODUTOS, path, tmp_path / "events.parquet")


KINDS_SOURCES = """
version: 2
sources:
  - name: kinds
    tables:
      - name: kinds
        meta: {primary_key: [id], csv_separator: ";"}
        columns:
          - {name: id, data_type: integer}
          - {name: amount, data_type: double}
          - {name: day, data_type: date}
          - {name: at, data_type: timestamp}
          - {name: price, data_type: "decimal(10,2)"}
"""
# texts of each kind that DuckDB does not write back the same (`+2`, `1E+20`, an offset, ...) beside its own forms
# (a padded value is the careful path's: the one pass stops at it, see test_integers_in_any_exact_form_are_read)
KINDS_VALID = [
    "1;1.5;2024-01-01;2024-01-01 10:00:00.5;1.5",
    "2;100.0;0999-12-31;2024-01-01T10:00;-0.25",
    "3;1E+20;2024-02-29;2024-01-01 00:00:00+02;.5",
    "4;+2;2024-03-01;2024-01-01 00:00:00Z;3",
    "5;007.50;2024-03-02;2024-01-01;+7.10",
    "6;1.5e-07;2024-03-03;2024-01-01 23:59:59.123456;0.01",
    "8;.5;2024-03-05;2024-01-01 10:00:00-03:30;99999999.99",
    "9;-0;2024-03-06;2024-01-01 00:00:00.000;-7",
]
# forms DuckDB reads (and writes back) that the declared patterns refuse, and values a cast would round
KINDS_REFUSED = [
    ("amount", "nan"),
    ("amount", "inf"),
    ("amount", "-infinity"),
    ("day", "infinity"),
    ("day", "10000-01-01"),
    ("day", "0001-01-01 (BC)"),
    ("at", "infinity"),
    ("at", "0001-01-01 00:00:00 (BC)"),
    ("at", "10000-01-01 00:00:00"),
    ("price", "1.234"),
    ("id", "1.5"),
    # forms the casts read that the one pass's cheaper first tests must not let through either
    ("id", "1.0"),
    ("id", "1e2"),
    ("id", "0x1F"),
    ("id", "1_000"),
    ("amount", "1_000"),
    ("amount", "+-5"),
    # an exponent out of range casts to infinity, which `inf` above is refused as
    ("amount", "1e999"),
    ("amount", "-1E+400"),
    ("day", "-infinity"),
    ("day", "2024-1-01"),
    ("day", "2024/01/01"),
    ("day", "02024-01-01"),
    ("at", "-infinity"),
    ("at", "2024-1-01 00:00:00"),
    ("at", "02024-01-01 00:00:00"),
    ("at", "2024-01-01 10:00:00 UTC"),
    ("price", "1e2"),
]


def read_kinds(tmp_path: Path, lines: list[str], careful: bool) -> pa.Table:
    """The `kinds` table read from `lines`; `careful` adds a blank line, which only the careful path reads."""
    declarations = tmp_path / "_kinds__sources.yml"
    declarations.write_text(KINDS_SOURCES)
    table = load_catalog([declarations]).source("kinds").table("kinds")
    folder, work = tmp_path / "in", tmp_path / "work"
    for path in (folder, work):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
    rows = [*lines[:1], *([""] if careful else []), *lines[1:]]
    (folder / "kinds.csv").write_text("\n".join(["id;amount;day;at;price", *rows]) + "\n")
    return pq.read_table(
        CsvFolderReader(folder).read(table, CaptureContext(work)).to_parquet(work / "out.parquet", table)
    )


def test_the_one_pass_reads_every_kind_as_the_careful_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one pass takes a value that its cast writes back unchanged without matching the type's pattern; every
    other text goes through the pattern. Both paths read the same values from odd but valid texts, and the one
    pass reads them all itself."""
    careful = read_kinds(tmp_path, KINDS_VALID, careful=True)

    def refuse(*args: object) -> None:
        raise AssertionError("the one pass gave up on a valid file")

    monkeypatch.setattr(csv_reader, "_read_carefully", refuse)
    one_pass = read_kinds(tmp_path, KINDS_VALID, careful=False)
    assert one_pass.num_rows == len(KINDS_VALID)
    assert one_pass.to_pylist() == careful.to_pylist()
    assert one_pass.column("amount").to_pylist()[:3] == [1.5, 100.0, 1e20]
    # an offset is converted to UTC, in both paths
    assert str(one_pass.column("at")[2]) == "2023-12-31 22:00:00"


@pytest.mark.parametrize(("column", "text"), KINDS_REFUSED)
def test_a_form_the_pattern_refuses_is_refused_by_both_paths(tmp_path: Path, column: str, text: str) -> None:
    valid = dict(zip(["id", "amount", "day", "at", "price"], KINDS_VALID[0].split(";"), strict=True))
    line = ";".join(text if name == column else value for name, value in {**valid, "id": "2"}.items())
    for careful in (False, True):
        with pytest.raises(BadValueError) as refused:
            read_kinds(tmp_path, [KINDS_VALID[0], line], careful)
        assert (refused.value.column, refused.value.value, refused.value.line) == (column, text, 4 if careful else 3)
