"""The table declarations: what ships, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import ingest

from ingestion.catalog import load_catalog
from ingestion.errors import BadIdentifierError, BadSettingError, CatalogError, DeclarationError


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


TABLE = "_s__sources.yml: table s.t"


@pytest.mark.parametrize(
    ("kwargs", "what", "name"),
    [
        ({"table": "'../etc'"}, "_s__sources.yml: table of source s", "../etc"),
        ({"table": "'a b'"}, "_s__sources.yml: table of source s", "a b"),
        ({"table": "'x; drop table y'"}, "_s__sources.yml: table of source s", "x; drop table y"),
        ({"column": "'id\"'", "key": "'id\"'"}, f"{TABLE}: column", 'id"'),
    ],
    ids=["traversal", "space", "sql", "quote"],
)
def test_names_that_are_not_identifiers_are_refused_with_the_name(
    tmp_path: Path, kwargs: dict[str, str], what: str, name: str
) -> None:
    with pytest.raises(BadIdentifierError) as refused:
        load_catalog([declaration(tmp_path, **kwargs)])
    assert (refused.value.what, refused.value.name, refused.value.exit_code) == (what, name, 2)


@pytest.mark.parametrize(
    ("kwargs", "setting", "value"),
    [
        ({"key": "missing"}, "meta.primary_key", "missing"),
        ({"extra": ", ordering_column: nope"}, "meta.ordering_column", "nope"),
        ({"extra": ", csv_separator: ';;'"}, "meta.csv_separator", ";;"),
        ({"column": "_cdc_sequence", "key": "_cdc_sequence"}, "columns", ("_cdc_sequence",)),
        # what the dbt models add: the load time, the change feed's, dbt's snapshot columns, in any case
        ({"column": "_Loaded_At", "key": "_Loaded_At"}, "columns", ("_Loaded_At",)),
        ({"column": "_change_type", "key": "_change_type"}, "columns", ("_change_type",)),
        ({"column": "DBT_VALID_TO", "key": "DBT_VALID_TO"}, "columns", ("DBT_VALID_TO",)),
        ({"extra": ", database_mode: sometimes"}, "meta.database_mode", "sometimes"),
    ],
    ids=["key", "ordering", "separator", "reserved", "reserved-load-time", "reserved-feed", "reserved-history", "mode"],
)
def test_bad_declarations_are_refused_naming_table_setting_and_value(
    tmp_path: Path, kwargs: dict[str, str], setting: str, value: object
) -> None:
    with pytest.raises(CatalogError) as refused:
        load_catalog([declaration(tmp_path, **kwargs)])
    error = refused.value
    if isinstance(error, BadSettingError):  # a setting whose value is not one of its choices
        assert (error.where, error.value) == (f"{TABLE}: {setting}", value)
    else:
        assert isinstance(error, DeclarationError), error
        assert (error.where, error.setting, error.value) == (TABLE, setting, value)


@pytest.mark.parametrize("tables", ["clientes,../x", "clientes;drop", "nope", "a b"])
def test_bad_table_names_on_the_command_line_exit_2_and_publish_nothing(tmp_path: Path, tables: str) -> None:
    result = ingest(tmp_path / "lake", "--tables", tables, timeout=120)
    assert result.returncode == 2
    assert "table" in result.stderr
    assert not (tmp_path / "lake" / "raw").exists()
