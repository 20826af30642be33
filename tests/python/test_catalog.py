"""The table declarations: what ships, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import ingest

from ingestion.catalog import load_catalog
from ingestion.errors import CatalogError


def test_shipped_loyalty_declaration() -> None:
    loyalty = load_catalog().source("loyalty")
    assert loyalty.capture == "snapshot"
    keys = {name: table.primary_key for name, table in loyalty.tables.items()}
    assert keys == {
        "clientes": ("idCliente",),
        "produtos": ("IdProduto",),
        "transacoes": ("IdTransacao",),
        "transacao_produto": ("idTransacaoProduto",),
    }
    assert all(t.csv_separator == ";" for t in loyalty.tables.values())
    assert loyalty.table("clientes").column_names == [
        "idCliente", "flEmail", "flTwitch", "flYouTube", "flBlueSky", "flInstagram", "qtdePontos", "DtCriacao",
        "DtAtualizacao",
    ]  # fmt: skip


def declaration(tmp_path: Path, table: str = "t", column: str = "id", key: str = "id", extra: str = "") -> Path:
    path = tmp_path / "_s__sources.yml"
    path.write_text(
        f"""
version: 2
sources:
  - name: s
    tables:
      - name: {table}
        meta: {{primary_key: [{key}]{extra}}}
        columns:
          - {{name: {column}, data_type: integer}}
          - {{name: other, data_type: varchar}}
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": "'../etc'"}, r"table of source s '\.\./etc' is not a plain identifier"),
        ({"table": "'a b'"}, r"'a b' is not a plain identifier"),
        ({"table": "'x; drop table y'"}, r"'x; drop table y' is not a plain identifier"),
        ({"column": "'id\"'", "key": "'id\"'"}, r"column 'id\"' is not a plain identifier"),
        ({"key": "missing"}, r"primary key column missing is not a declared column"),
        ({"extra": ", ordering_column: nope"}, r"ordering column nope is not a declared column"),
        ({"extra": ", csv_separator: ';;'"}, r"csv_separator must be one character"),
        ({"column": "_cdc_sequence", "key": "_cdc_sequence"}, r"reserved for the lake: _cdc_sequence"),
    ],
    ids=["traversal", "space", "sql", "quote", "key", "ordering", "separator", "reserved"],
)
def test_bad_declarations_are_refused_with_the_name(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        load_catalog([declaration(tmp_path, **kwargs)])


@pytest.mark.parametrize("tables", ["clientes,../x", "clientes;drop", "nope", "a b"])
def test_bad_table_names_on_the_command_line_exit_2_and_publish_nothing(tmp_path: Path, tables: str) -> None:
    result = ingest(tmp_path / "lake", "--tables", tables, timeout=120)
    assert result.returncode == 2
    assert "table" in result.stderr
    assert not (tmp_path / "lake" / "raw").exists()
