"""The lake's published tables as views of a DuckDB connection: what `dbt show --target lake`, a notebook or a
script reads while a build runs.

The warehouse's DuckDB file admits one writer and, while a reader holds it, no build; the published tables
(ingestion/published_tables.py) are Delta tables in the lake, which any number of readers read beside the build.
Each view here lists the Parquet files of its table's Delta version at the moment the view was made: a build that
commits meanwhile adds files and a log entry, and the view keeps reading the version it was made at, whole (delta-rs
leaves the files a commit removes in place; only a vacuum would delete them, and nothing here vacuums). Connect
again, or call `attach_published` again, to read the newer versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingestion.published_tables import PublishedTables

if TYPE_CHECKING:
    import duckdb
    from deltalake import DeltaTable

# reader features under which a table's files still hold its rows, under its columns' names and types
_PLAIN_FEATURES = {"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"}


@dataclass(frozen=True)
class PublishedView:
    """One published table as a view: `<schema>.<table>` at Delta `version`, read from `location`."""

    schema: str
    table: str
    version: int
    location: str


def attach_published(connection: duckdb.DuckDBPyConnection, lake_uri: str) -> list[PublishedView]:
    """Make every table published into the lake at `lake_uri` a view `<schema>.<table>` of `connection` (its
    database's catalog, so every cursor of it sees them), at the table's current Delta version.

    An S3 lake's files are read through the fsspec filesystem registered on the connection (`connect` registers
    one; dbt-duckdb registers the profile's `filesystems`)."""
    tables = PublishedTables(lake_uri)
    # one transaction: a cursor of the connection sees every table at its old version or every one at its new
    connection.execute("begin transaction")
    try:
        views = _attach(connection, tables)
    except BaseException:
        connection.execute("rollback")
        raise
    connection.execute("commit")
    return views


def _attach(connection: duckdb.DuckDBPyConnection, tables: PublishedTables) -> list[PublishedView]:
    views = []
    for record in tables.builds():
        delta = tables.open(record.schema, record.table)
        if delta is None:
            # recorded, but its table is gone from the lake: nothing to read, as for a table never published
            continue
        name = f"{_quote(record.schema)}.{_quote(record.table)}"
        connection.execute(f"create schema if not exists {_quote(record.schema)}")
        # what an earlier call made of it (a view, or a table when it had no file)
        _drop(connection, record.schema, record.table)
        files = delta.file_uris()
        if files and _files_are_the_table(delta):
            # the table's columns in its schema's order; a file written before a column was added reads it as null
            columns = ", ".join(_quote(field.name) for field in delta.schema().fields)
            listing = ", ".join(_literal(file) for file in files)
            connection.execute(
                f"create view {name} as select {columns} from read_parquet([{listing}], union_by_name = true)"
            )
        else:
            # no file (no row), or files that are not the rows as they are: the rows delta-rs reads, as a table
            connection.register("_lago_delta_rows", delta.to_pyarrow_table())
            connection.execute(f"create table {name} as select * from _lago_delta_rows")
            connection.unregister("_lago_delta_rows")
        location = tables.location(record.schema, record.table)
        views.append(PublishedView(record.schema, record.table, delta.version(), location))
    return views


def _drop(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> None:
    found = connection.execute(
        "select table_type from information_schema.tables"
        " where table_catalog = current_database() and table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    if found is not None:
        kind = "view" if found[0] == "VIEW" else "table"
        connection.execute(f"drop {kind} {_quote(schema)}.{_quote(table)}")


def _files_are_the_table(delta: DeltaTable) -> bool:
    """Whether the table's Parquet files, read as they are, hold its rows: no reader feature beyond those that
    change nothing in the files' rows and names (deletion vectors, column mapping or type widening, which a Delta
    writer other than this project's may use, need a Delta reader)."""
    protocol = delta.protocol()
    features = set(protocol.reader_features or ())
    return protocol.min_reader_version == 1 or (protocol.min_reader_version == 3 and features <= _PLAIN_FEATURES)


def connect(lake_uri: str = "lake") -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB with every table published into the lake at `lake_uri` as a view (a folder, or
    `s3://bucket/prefix` with the capture's endpoint and credentials: env AWS_ENDPOINT_URL, boto3's chain)."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("set TimeZone = 'UTC'")
    register_lake_filesystem(connection, lake_uri)
    attach_published(connection, lake_uri)
    return connection


def register_lake_filesystem(connection: duckdb.DuckDBPyConnection, lake_uri: str) -> None:
    """Let DuckDB read and write `s3://` paths through s3fs, on the capture's endpoint and region (env
    AWS_ENDPOINT_URL, boto3's chain), when the lake is on S3 (DuckDB's httpfs extension cannot be installed
    offline). A local lake registers nothing: s3fs and botocore cost a quarter of a second to import, in every
    dbt command."""
    if not lake_uri.startswith("s3://"):
        return
    import s3fs

    from ingestion.lake import S3Lake

    client = S3Lake(lake_uri).client
    connection.register_filesystem(
        s3fs.S3FileSystem(
            client_kwargs={"endpoint_url": client.meta.endpoint_url, "region_name": client.meta.region_name}
        )
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
