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
from typing import TYPE_CHECKING, Any

from ingestion.published_tables import PublishedTables

if TYPE_CHECKING:
    import duckdb


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
    views = []
    for record in tables.builds():
        delta = tables.open(record.schema, record.table)
        if delta is None:
            # recorded, but its table is gone from the lake: nothing to read, as for a table never published
            continue
        name = f"{_quote(record.schema)}.{_quote(record.table)}"
        connection.execute(f"create schema if not exists {_quote(record.schema)}")
        files = delta.file_uris()
        if files:
            # the table's columns in its schema's order; a file written before a column was added reads it as null
            columns = ", ".join(_quote(field.name) for field in delta.schema().fields)
            listing = ", ".join(_literal(file) for file in files)
            connection.execute(
                f"create or replace view {name} as "
                f"select {columns} from read_parquet([{listing}], union_by_name = true)"
            )
        else:
            # a table with no file holds no row: an empty table of its columns and types
            connection.register("_lago_empty_table", delta.to_pyarrow_table())
            connection.execute(f"drop view if exists {name}")
            connection.execute(f"create or replace table {name} as select * from _lago_empty_table")
            connection.unregister("_lago_empty_table")
        location = tables.location(record.schema, record.table)
        views.append(PublishedView(record.schema, record.table, delta.version(), location))
    return views


def connect(lake_uri: str = "lake") -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB with every table published into the lake at `lake_uri` as a view (a folder, or
    `s3://bucket/prefix` with the capture's endpoint and credentials: env AWS_ENDPOINT_URL, boto3's chain)."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("set TimeZone = 'UTC'")
    if lake_uri.startswith("s3://"):
        connection.register_filesystem(_s3_filesystem(lake_uri))
    attach_published(connection, lake_uri)
    return connection


def _s3_filesystem(lake_uri: str) -> Any:
    import s3fs

    from ingestion.lake import S3Lake

    client = S3Lake(lake_uri).client
    return s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": client.meta.endpoint_url, "region_name": client.meta.region_name}
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
