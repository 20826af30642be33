"""The declared tables in a Postgres database: where each one is, the DDL that creates it from its declaration,
and which database types a declared type accepts.

A database type fits a declared one when every value it can hold is a value of the declared type, so a capture
never rounds or cuts: `integer` takes smallint and integer, `decimal(18,2)` takes numeric(p,s) of no more digits
either side of the point, `timestamp` takes `timestamptz` (read in UTC), `varchar` takes every text type, uuid and
enums. Column names are matched exactly, or else case-insensitively when that is unambiguous (a table created with
unquoted names holds them in lower case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ingestion.catalog import Table
from ingestion.postgres.errors import IncompatibleColumnError, MissingColumnError, MissingTableError

DEFAULT_SCHEMA = "public"
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")

# the database type a declared type is created as
_DDL_TYPES = {
    "varchar": "text",
    "integer": "integer",
    "bigint": "bigint",
    "double": "double precision",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}
# digits of the integer types, for a decimal(p,s) declaration
_INTEGER_DIGITS = {"int2": 5, "int4": 10, "int8": 19}
_FITS = {
    "integer": {"int2", "int4"},
    "bigint": {"int2", "int4", "int8"},
    "double": {"float4", "float8", "int2", "int4"},
    "boolean": {"bool"},
    "date": {"date"},
    "timestamp": {"timestamp", "timestamptz"},
}


def relation_of(table: Table) -> tuple[str, str]:
    """(schema, table) of `table` in its database."""
    return table.database_table or (DEFAULT_SCHEMA, table.name)


def relation_name(table: Table) -> str:
    return ".".join(relation_of(table))


def ddl_type(data_type: str) -> str:
    normalised = data_type.strip().lower()
    match = _DECIMAL.match(normalised)
    if match:
        return f"numeric({match.group(1)},{match.group(2)})"
    return _DDL_TYPES[normalised]


def create_table(conn: psycopg.Connection[tuple[object, ...]], table: Table) -> None:
    """Create `table` (and its schema) from its declaration when it does not exist, its key as primary key."""
    schema, name = relation_of(table)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(ddl_type(c.data_type))) for c in table.columns
    )
    key = sql.SQL(", ").join(sql.Identifier(c) for c in table.primary_key)
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL("create table if not exists {}.{} ({}, primary key ({}))").format(
            sql.Identifier(schema), sql.Identifier(name), columns, key
        )
    )


@dataclass(frozen=True)
class DatabaseColumn:
    name: str
    # as Postgres shows it: `numeric(18,2)`, `character varying(20)`
    shown: str
    # of the base type (a domain's), for the fit rules
    type_name: str
    category: str
    type_modifier: int


_COLUMNS = """
select a.attname, format_type(a.atttypid, a.atttypmod), base.typname, base.typcategory,
    case when t.typtype = 'd' then t.typtypmod else a.atttypmod end
from pg_attribute as a
join pg_class as c on c.oid = a.attrelid
join pg_namespace as n on n.oid = c.relnamespace
join pg_type as t on t.oid = a.atttypid
join pg_type as base on base.oid = case when t.typtype = 'd' then t.typbasetype else t.oid end
where n.nspname = %s and c.relname = %s and c.relkind in ('r', 'p', 'v', 'm', 'f')
    and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""


def database_columns(conn: psycopg.Connection[tuple[object, ...]], table: Table) -> list[DatabaseColumn]:
    """The columns of `table`'s relation (a table, view or materialised view); MissingTableError without it."""
    schema, name = relation_of(table)
    rows = conn.execute(_COLUMNS, (schema, name)).fetchall()
    if not rows:
        database = str(conn.info.dbname)
        raise MissingTableError(table.qualified_name, relation_name(table), database)
    return [DatabaseColumn(str(n), str(s), str(t), str(c), int(str(m))) for n, s, t, c, m in rows]


def resolve_columns(conn: psycopg.Connection[tuple[object, ...]], table: Table) -> list[DatabaseColumn]:
    """The database column of each declared column, in declared order, each checked to fit its declared type."""
    found = database_columns(conn, table)
    by_name = {c.name: c for c in found}
    resolved: list[DatabaseColumn] = []
    for declared in table.columns:
        column = by_name.get(declared.name)
        if column is None:
            folded = [c for c in found if c.name.lower() == declared.name.lower()]
            if len(folded) != 1:
                names = tuple(c.name for c in found)
                raise MissingColumnError(table.qualified_name, relation_name(table), declared.name, names)
            column = folded[0]
        if not fits(column, declared.data_type):
            raise IncompatibleColumnError(
                table.qualified_name, relation_name(table), declared.name, column.shown, declared.data_type
            )
        resolved.append(column)
    return resolved


def fits(column: DatabaseColumn, data_type: str) -> bool:
    """Whether every value of the database column is a value of the declared type."""
    normalised = data_type.strip().lower()
    if normalised == "varchar":
        return column.category in ("S", "E") or column.type_name == "uuid"
    match = _DECIMAL.match(normalised)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if column.type_name in _INTEGER_DIGITS:
            return precision - scale >= _INTEGER_DIGITS[column.type_name]
        if column.type_name != "numeric" or column.type_modifier < 4:
            return False  # an unconstrained numeric may hold values a decimal(p,s) would round
        found_precision = ((column.type_modifier - 4) >> 16) & 0xFFFF
        found_scale = (column.type_modifier - 4) & 0xFFFF
        return found_scale <= scale and found_precision - found_scale <= precision - scale
    return column.type_name in _FITS.get(normalised, set())
