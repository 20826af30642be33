"""The table catalogue, read from the dbt sources YAML so that ingestion and dbt share one declaration."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from ingestion.config import project_dir
from ingestion.errors import (
    BadIdentifierError,
    BadSettingError,
    DeclarationError,
    NoDeclarationsError,
    UnknownSourceError,
    UnknownTableError,
)

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_SOURCES_GLOB = "models/bronze/*/_*__sources.yml"

# Names go into lake paths and SQL: only plain identifiers are accepted.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")

# the declarable types, and their Arrow types for readers of the lake (pyarrow is imported only when asked)
DATA_TYPES = ("varchar", "integer", "bigint", "double", "boolean", "date", "timestamp")


# "snapshot": diffed into CDC files; "events": append-only
CaptureMode = Literal["snapshot", "events"]

# How a database source's table is captured (`meta.database_mode`, on the table or as the source's default;
# `--mode` overrides it for one run): "snapshot" reads it whole and diffs it against the lake's last state;
# "cursor" reads the rows whose `meta.cursor_column` moved since the last capture; "log" follows the database's
# write-ahead log (logical replication) and keeps every committed version.
DatabaseMode = Literal["snapshot", "cursor", "log"]
DATABASE_MODES: tuple[DatabaseMode, ...] = ("snapshot", "cursor", "log")

CDC_OPERATION = "_cdc_operation"
CDC_TIMESTAMP = "_cdc_timestamp"
CDC_SEQUENCE = "_cdc_sequence"
CDC_COLUMNS = (CDC_OPERATION, CDC_TIMESTAMP, CDC_SEQUENCE)
EVENT_INGESTED_AT = "_ingested_at"
EVENT_BATCH_ID = "_batch_id"
# What the dbt models add beside a table's declared columns (lake position, load time, change feed, the merge's
# and the history's working columns, dbt's snapshot columns): a declared column of one of these names would be
# two columns of one name in Bronze, or be taken for the pipeline's own. DuckDB and Spark compare names without
# case, so these are refused in any case.
PIPELINE_COLUMNS = (
    "_cdc_position",
    "_source_file",
    "_loaded_at",
    "_event_id",
    "_change_type",
    "_commit_version",
    "_commit_timestamp",
    "_change_id",
    "_change_rank",
    "_copy_rank",
    "_target_row",
    "_incoming_operation",
    "dbt_scd_id",
    "dbt_updated_at",
    "dbt_valid_from",
    "dbt_valid_to",
    "dbt_is_deleted",
)
RESERVED_COLUMNS = frozenset((*CDC_COLUMNS, EVENT_INGESTED_AT, EVENT_BATCH_ID, *PIPELINE_COLUMNS))


def validate_identifier(name: object, what: str) -> str:
    """Return `name` if it is a plain identifier, else raise a CatalogError naming `what`."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise BadIdentifierError(what, name)
    return name


def check_type(data_type: str, where: str) -> str:
    """The declared type, or a CatalogError naming where it is declared."""
    normalised = data_type.strip().lower()
    if normalised not in DATA_TYPES and not _DECIMAL.match(normalised):
        raise DeclarationError(
            where,
            f"unsupported data_type {data_type!r} (use one of {sorted(DATA_TYPES)} or decimal(p,s))",
            setting="data_type",
            value=data_type,
        )
    return data_type


def arrow_type(data_type: str, where: str) -> pa.DataType:
    import pyarrow as pa

    normalised = check_type(data_type, where).strip().lower()
    match = _DECIMAL.match(normalised)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    types = {
        "varchar": pa.string(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
    }
    return types[normalised]


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str

    @property
    def arrow(self) -> pa.DataType:
        return arrow_type(self.data_type, self.name)


@dataclass(frozen=True)
class Breaker:
    """When a capture looks like a truncated download rather than real deletes: it is held, not published.

    Tripped when the diff deletes more than `max_deleted_share` of the previous snapshot's rows, or the row count
    falls by more than `max_row_drop_share`; tables whose previous snapshot has fewer than `min_rows` rows are
    not guarded (a handful of deletes is a large share of a tiny table). Declared per table under
    `meta.circuit_breaker`.
    """

    max_deleted_share: float = 0.2
    max_row_drop_share: float = 0.2
    min_rows: int = 100


def _parse_breaker(raw: object, where: str) -> Breaker:
    if raw is None:
        return Breaker()
    if not isinstance(raw, dict):
        raise DeclarationError(
            where, "meta.circuit_breaker must be a mapping", setting="meta.circuit_breaker", value=raw
        )
    unknown = sorted(set(raw) - set(Breaker.__dataclass_fields__))
    if unknown:
        raise DeclarationError(
            where,
            f"meta.circuit_breaker has unknown key(s) {', '.join(map(str, unknown))}",
            setting="meta.circuit_breaker",
            value=tuple(unknown),
        )
    values: dict[str, float | int] = {}
    for name in ("max_deleted_share", "max_row_drop_share"):
        if name in raw:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise DeclarationError(
                    where,
                    f"meta.circuit_breaker.{name} must be a share between 0 and 1",
                    setting=f"meta.circuit_breaker.{name}",
                    value=value,
                )
            values[name] = float(value)
    if "min_rows" in raw:
        rows = raw["min_rows"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise DeclarationError(
                where,
                "meta.circuit_breaker.min_rows must be a whole number, 0 or more",
                setting="meta.circuit_breaker.min_rows",
                value=rows,
            )
        values["min_rows"] = rows
    return Breaker(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Table:
    source: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    ordering_column: str | None = None
    csv_separator: str = ","
    breaker: Breaker = field(default_factory=Breaker)
    # where a database source keeps the table: `meta.database_table` (`schema.table`), else `public.<name>`
    database_table: tuple[str, str] | None = None
    # how a database source captures the table (ignored by file readers)
    database_mode: DatabaseMode = "snapshot"
    # cursor mode: the column whose value grows on every insert and update (`meta.cursor_column`)
    cursor_column: str | None = None
    # cursor mode: seconds a writer's cursor value may run ahead of the database's clock, or be taken before its
    # transaction starts (an application's clock); the window then reaches this much further back (`meta.cursor_lag`)
    cursor_lag: float = 0.0
    # cursor mode: every this many cursor captures also read every key, to find the rows deleted in the source
    # (`meta.cursor_key_scan`; 1 = every capture)
    cursor_key_scan: int = 1

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.qualified_name} has no column {name}")

    @property
    def schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(c.name, c.arrow) for c in self.columns])

    @property
    def qualified_name(self) -> str:
        return f"{self.source}.{self.name}"


@dataclass(frozen=True)
class Source:
    name: str
    capture: CaptureMode
    tables: dict[str, Table] = field(default_factory=dict)

    def table(self, name: str) -> Table:
        validate_identifier(name, "table")
        if name not in self.tables:
            raise UnknownTableError(self.name, name, tuple(self.tables))
        return self.tables[name]


@dataclass(frozen=True)
class Catalog:
    sources: dict[str, Source]

    def source(self, name: str) -> Source:
        validate_identifier(name, "source")
        if name not in self.sources:
            raise UnknownSourceError(name, tuple(self.sources))
        return self.sources[name]


def _parse_table(source: str, raw: dict[str, object], path: Path, default_mode: DatabaseMode = "snapshot") -> Table:
    name = validate_identifier(raw.get("name"), f"{path.name}: table of source {source}")
    where = f"{path.name}: table {source}.{name}"
    meta = raw.get("meta") or {}
    if not isinstance(meta, dict):
        raise DeclarationError(where, "meta must be a mapping", setting="meta", value=meta)
    raw_columns = raw.get("columns") or []
    if not isinstance(raw_columns, list) or not raw_columns:
        raise DeclarationError(where, "declares no columns", setting="columns", value=raw_columns)
    columns: list[Column] = []
    for raw_column in raw_columns:
        column_name = validate_identifier(raw_column.get("name"), f"{where}: column")
        data_type = raw_column.get("data_type")
        if not isinstance(data_type, str):
            raise DeclarationError(
                where, f"column {column_name} has no data_type", setting="data_type", value=column_name
            )
        columns.append(Column(column_name, check_type(data_type, f"{where}.{column_name}")))
    names = [c.name for c in columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DeclarationError(
            where, f"columns declared twice: {', '.join(duplicated)}", setting="columns", value=tuple(duplicated)
        )
    reserved = sorted(name for name in names if name.lower() in RESERVED_COLUMNS)
    if reserved:
        raise DeclarationError(
            where,
            f"column names reserved for the lake: {', '.join(reserved)}",
            setting="columns",
            value=tuple(reserved),
        )

    key = meta.get("primary_key")
    if isinstance(key, str):
        key = [key]
    if not isinstance(key, list) or not key:
        raise DeclarationError(
            where, "meta.primary_key must name one or more columns", setting="meta.primary_key", value=key
        )
    for key_column in key:
        validate_identifier(key_column, f"{where}: primary key column")
        if key_column not in names:
            raise DeclarationError(
                where,
                f"primary key column {key_column} is not a declared column",
                setting="meta.primary_key",
                value=key_column,
            )
    ordering = meta.get("ordering_column")
    if ordering is not None:
        validate_identifier(ordering, f"{where}: ordering column")
        if ordering not in names:
            raise DeclarationError(
                where,
                f"ordering column {ordering} is not a declared column",
                setting="meta.ordering_column",
                value=ordering,
            )
    separator = meta.get("csv_separator", ",")
    if not isinstance(separator, str) or len(separator) != 1 or separator in '"\r\n':
        raise DeclarationError(
            where,
            "csv_separator must be one character other than a quote or newline",
            setting="meta.csv_separator",
            value=separator,
        )
    breaker = _parse_breaker(meta.get("circuit_breaker"), where)
    database_table = _parse_database_table(meta.get("database_table"), where)
    mode = parse_database_mode(meta.get("database_mode", default_mode), f"{where}: meta.database_mode")
    cursor = meta.get("cursor_column")
    if cursor is not None:
        validate_identifier(cursor, f"{where}: cursor column")
        if cursor not in names:
            raise DeclarationError(
                where,
                f"cursor column {cursor} is not a declared column",
                setting="meta.cursor_column",
                value=cursor,
            )
    elif mode == "cursor":
        raise DeclarationError(
            where,
            "meta.database_mode cursor needs meta.cursor_column, the column that grows on every insert and update "
            "(an updated_at timestamp, say)",
            setting="meta.cursor_column",
        )
    lag = _parse_lag(meta.get("cursor_lag", 0), f"{where}: meta.cursor_lag")
    key_scan = meta.get("cursor_key_scan", 1)
    if isinstance(key_scan, bool) or not isinstance(key_scan, int) or key_scan < 1:
        raise DeclarationError(
            where,
            f"meta.cursor_key_scan must be a whole number, 1 or more (a key scan every that many cursor captures), "
            f"not {key_scan!r}",
            setting="meta.cursor_key_scan",
            value=key_scan,
        )
    return Table(
        source,
        name,
        tuple(columns),
        tuple(key),
        ordering,
        separator,
        breaker,
        database_table,
        mode,
        cursor,
        lag,
        key_scan,
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def _parse_lag(raw: object, where: str) -> float:
    """Seconds: a number, or a text with a unit (`90s`, `5m`, `1h`)."""
    if not isinstance(raw, bool) and isinstance(raw, int | float) and raw >= 0:
        return float(raw)
    match = _DURATION.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise BadSettingError(where, raw, "a duration in seconds, or with a unit (90s, 5m, 1h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_database_mode(raw: object, where: str) -> DatabaseMode:
    """A capture mode of a database table, or a CatalogError naming where it was given."""
    for mode in DATABASE_MODES:
        if raw == mode:
            return mode
    raise BadSettingError(where, raw, f"one of {', '.join(DATABASE_MODES)}")


def _parse_database_table(raw: object, where: str) -> tuple[str, str] | None:
    """`meta.database_table: schema.table`, the table's name in a database source (plain identifiers)."""
    if raw is None:
        return None
    schema, dot, name = str(raw).partition(".")
    if not isinstance(raw, str) or not dot:
        raise DeclarationError(
            where, f"meta.database_table must be 'schema.table', not {raw!r}", setting="meta.database_table", value=raw
        )
    return validate_identifier(schema, f"{where}: database schema"), validate_identifier(
        name, f"{where}: database table"
    )


def load_catalog(paths: list[Path] | None = None, *, project: Path | None = None) -> Catalog:
    """Parse every sources YAML under models/bronze/ of `project` (default: `config.project_dir()`, the checkout
    or env LAGO_PROJECT_DIR), or the given files, into a Catalog."""
    if paths is None:
        paths = sorted((project or project_dir()).glob(DEFAULT_SOURCES_GLOB))
    files = paths
    if not files:
        raise NoDeclarationsError(DEFAULT_SOURCES_GLOB)
    sources: dict[str, Source] = {}
    for path in files:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise DeclarationError(path.name, f"not valid YAML: {exc}") from exc
        for raw_source in document.get("sources") or []:
            name = validate_identifier(raw_source.get("name"), f"{path.name}: source")
            if name in sources:
                raise DeclarationError(path.name, f"source {name} is declared twice", setting="name", value=name)
            meta = raw_source.get("meta") or {}
            capture: CaptureMode = meta.get("capture", "snapshot")
            if capture not in ("snapshot", "events"):
                raise DeclarationError(
                    f"{path.name}: source {name}",
                    "meta.capture must be 'snapshot' or 'events'",
                    setting="meta.capture",
                    value=capture,
                )
            default_mode = parse_database_mode(
                meta.get("database_mode", "snapshot"), f"{path.name}: source {name}: meta.database_mode"
            )
            tables: dict[str, Table] = {}
            for raw_table in raw_source.get("tables") or []:
                table = _parse_table(name, raw_table, path, default_mode)
                if table.name in tables:
                    raise DeclarationError(
                        path.name, f"table {name}.{table.name} is declared twice", setting="name", value=table.name
                    )
                tables[table.name] = table
            sources[name] = Source(name, capture, tables)
    return Catalog(sources)
