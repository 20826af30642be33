"""Where a table is in its database (declared once, beside its other keys), and which database types a declared
type reads: a type is read only into one that holds every value of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.catalog import load_catalog
from ingestion.errors import BadIdentifierError, BadSettingError, CatalogError, DeclarationError
from ingestion.postgres.schema import DatabaseColumn, ddl_type, fits, relation_name


def declare(tmp_path: Path, database_table: str | None) -> Path:
    where = f", database_table: {database_table!r}" if database_table is not None else ""
    path = tmp_path / "_s__sources.yml"
    path.write_text(
        f"""
version: 2
sources:
  - name: s
    tables:
      - name: orders
        meta: {{primary_key: [id]{where}}}
        columns:
          - {{name: id, data_type: integer}}
""",
        encoding="utf-8",
    )
    return path


def test_a_table_is_at_its_declared_place_or_in_public(tmp_path: Path) -> None:
    placed = load_catalog([declare(tmp_path, "sales.order_lines")]).source("s").table("orders")
    assert placed.database_table == ("sales", "order_lines") and relation_name(placed) == "sales.order_lines"
    default = load_catalog([declare(tmp_path, None)]).source("s").table("orders")
    assert default.database_table is None and relation_name(default) == "public.orders"


@pytest.mark.parametrize(
    ("value", "part", "name"),
    [
        ("orders", None, None),
        ("sales.orders; drop table x", "database table", "orders; drop table x"),
        ("sales.", "database table", ""),
        (".orders", "database schema", ""),
        ("a.b.c", "database table", "b.c"),
    ],
)
def test_a_bad_database_place_is_refused_by_name(tmp_path: Path, value: str, part: str | None, name: str) -> None:
    with pytest.raises(CatalogError) as refused:
        load_catalog([declare(tmp_path, value)])
    error = refused.value
    where = "_s__sources.yml: table s.orders"
    if part is None:  # not schema.table at all
        assert isinstance(error, DeclarationError), error
        assert (error.where, error.setting, error.value) == (where, "meta.database_table", value)
    else:  # one of its two parts is not a plain identifier
        assert isinstance(error, BadIdentifierError), error
        assert (error.what, error.name) == (f"{where}: {part}", name)


def column(type_name: str, category: str = "N", modifier: int = -1) -> DatabaseColumn:
    return DatabaseColumn("c", type_name, type_name, category, modifier)


def numeric(precision: int, scale: int) -> DatabaseColumn:
    return column("numeric", modifier=((precision << 16) | scale) + 4)


FITS = [
    (column("text", "S"), "varchar", True),
    (column("uuid", "U"), "varchar", True),
    (column("int4"), "varchar", False),
    (column("int4"), "integer", True),
    (column("int8"), "integer", False),
    (column("int8"), "bigint", True),
    (column("int8"), "double", False),
    (column("float4"), "double", True),
    (column("timestamptz", "D"), "timestamp", True),
    (column("date", "D"), "timestamp", False),
    (numeric(12, 2), "decimal(18,2)", True),
    (numeric(18, 3), "decimal(18,2)", False),
    (numeric(19, 2), "decimal(18,2)", False),
    (column("numeric"), "decimal(18,2)", False),
    (column("int8"), "decimal(21,2)", True),
    (column("int8"), "decimal(20,2)", False),
]


@pytest.mark.parametrize(("found", "declared", "expected"), FITS, ids=[f"{f.type_name}-{d}" for f, d, _ in FITS])
def test_a_database_type_is_read_only_into_a_type_that_holds_its_values(
    found: DatabaseColumn, declared: str, expected: bool
) -> None:
    assert fits(found, declared) is expected


def test_declared_types_are_created_as_database_types() -> None:
    assert [ddl_type(t) for t in ("varchar", "bigint", "double", "timestamp", "decimal(18, 2)")] == [
        "text",
        "bigint",
        "double precision",
        "timestamp",
        "numeric(18,2)",
    ]


def declare_modes(tmp_path: Path, source_meta: str, table_meta: str) -> Path:
    path = tmp_path / "_m__sources.yml"
    path.write_text(
        f"""
version: 2
sources:
  - name: m
    meta: {{{source_meta}}}
    tables:
      - name: orders
        meta: {{primary_key: [id]{table_meta}}}
        columns:
          - {{name: id, data_type: integer}}
          - {{name: updated_at, data_type: timestamp}}
      - name: items
        meta: {{primary_key: [id]}}
        columns:
          - {{name: id, data_type: integer}}
""",
        encoding="utf-8",
    )
    return path


def test_a_tables_capture_mode_is_its_own_else_its_sources_else_snapshot(tmp_path: Path) -> None:
    plain = load_catalog([declare_modes(tmp_path, "", "")]).source("m")
    assert [t.database_mode for t in plain.tables.values()] == ["snapshot", "snapshot"]
    mixed = load_catalog(
        [declare_modes(tmp_path, "database_mode: log", ", database_mode: cursor, cursor_column: updated_at")]
    ).source("m")
    assert mixed.table("orders").database_mode == "cursor"
    assert mixed.table("orders").cursor_column == "updated_at"
    assert mixed.table("items").database_mode == "log"


@pytest.mark.parametrize(
    ("source_meta", "table_meta", "where", "value"),
    [
        ("database_mode: wal", "", "_m__sources.yml: source m: meta.database_mode", "wal"),
        ("", ", database_mode: Snapshot", "_m__sources.yml: table m.orders: meta.database_mode", "Snapshot"),
    ],
)
def test_an_unknown_capture_mode_is_refused_by_name(
    tmp_path: Path, source_meta: str, table_meta: str, where: str, value: str
) -> None:
    with pytest.raises(BadSettingError) as refused:
        load_catalog([declare_modes(tmp_path, source_meta, table_meta)])
    assert (refused.value.where, refused.value.value, refused.value.exit_code) == (where, value, 2)


@pytest.mark.parametrize(
    ("table_meta", "value"),
    [(", database_mode: cursor", None), (", cursor_column: changed_at", "changed_at")],
    ids=["cursor-without-column", "undeclared-column"],
)
def test_a_bad_cursor_column_is_refused_by_name(tmp_path: Path, table_meta: str, value: str | None) -> None:
    with pytest.raises(DeclarationError) as refused:
        load_catalog([declare_modes(tmp_path, "", table_meta)])
    error = refused.value
    assert (error.where, error.setting, error.value) == ("_m__sources.yml: table m.orders", "meta.cursor_column", value)
