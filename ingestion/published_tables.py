"""The lake's published tables: tables of the warehouse written into the lake as Delta tables, under
`<lake>/tables/<schema>/<table>/`, so that Spark, Polars, DuckDB and delta-rs read them as they are, and read them
while a build runs (the DuckDB file admits no reader beside its writer).

One class owns the layout and its one transition, `publish`, which makes a Delta table equal to the warehouse's
rows in one commit:

- the first publication, a rebuild (`--full-refresh`) or a changed set of columns writes the table whole, a new
  version that replaces the last;
- otherwise one MERGE on the table's grain: rows that are new are inserted, rows whose values differ are updated,
  rows that are gone are deleted, and the rest is left as it is. A build that changed nothing commits nothing.

A reader sees each table as it was before a commit or after it, never between; a failure before the commit leaves
the version before. Every table has Delta's Change Data Feed on, so a consumer can read what each build changed.

Beside the tables, `tables/_builds/<schema>/<table>.json` is the last build that published each one (a MERGE that
changed nothing included, which commits nothing): when, the Delta version, and the lake's files of each source
table upstream as that build started (`SourceMark`), from which `freshness.py` tells a reader whether the table is
behind the lake.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from ingestion.errors import BuildRecordError, PublishError

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from ingestion.lake import Lake, S3Lake

PUBLISHED_FOLDER = "tables"
# the change feed's column naming what a change is (insert, update_postimage, delete)
CHANGE_TYPE = "_change_type"
# the commit metadata holding the digest of the rows a whole-table publication made the table equal to
CONTENT = "lago_mago.content"
BUILDS_FOLDER = f"{PUBLISHED_FOLDER}/_builds"

# what a publication did to its table
PublicationKind = Literal["created", "rewritten", "merged", "unchanged"]


@dataclass(frozen=True)
class Publication:
    """One table's publication: what it did, and the Delta version the table is at after it."""

    schema: str
    table: str
    location: str
    kind: PublicationKind
    version: int
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    def describe(self) -> str:
        changes = f" (+{self.inserted} ~{self.updated} -{self.deleted})" if self.kind == "merged" else ""
        return f"{self.schema}.{self.table}: {self.kind}, Delta version {self.version}{changes}, at {self.location}"


@dataclass(frozen=True)
class SourceMark:
    """A source table as a build started: how many files the lake held of it, and the newest one's capture time."""

    table: str
    files: int
    newest_capture: str | None


@dataclass(frozen=True)
class BuildRecord:
    """The last build that published a table: when it ended, what it did, and the sources it had seen."""

    schema: str
    table: str
    built_at: str
    kind: PublicationKind
    version: int
    sources: tuple[SourceMark, ...]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes, file: str) -> BuildRecord:
        try:
            body: dict[str, Any] = json.loads(raw)
            kind = body["kind"]
            if kind not in get_args(PublicationKind):
                raise ValueError(f"unknown publication kind {kind!r}")
            return cls(
                schema=str(body["schema"]),
                table=str(body["table"]),
                built_at=str(body["built_at"]),
                kind=kind,
                version=int(body["version"]),
                sources=tuple(
                    SourceMark(str(mark["table"]), int(mark["files"]), mark.get("newest_capture"))
                    for mark in body["sources"]
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BuildRecordError(file, f"{type(exc).__name__}: {exc}") from exc


class PublishedTables:
    """The published tables of the lake at `lake_uri` (a folder, or `s3://bucket/prefix`)."""

    def __init__(self, lake_uri: str) -> None:
        self.lake_uri = lake_uri.rstrip("/")
        self._s3: S3Lake | None = None
        if self.lake_uri.startswith("s3://"):
            from ingestion.lake import S3Lake

            self._s3 = S3Lake(self.lake_uri)
            self.root = f"{self._s3.uri}/{PUBLISHED_FOLDER}"
        else:
            self.root = str(Path(self.lake_uri).resolve() / PUBLISHED_FOLDER)

    def location(self, schema: str, table: str) -> str:
        return f"{self.root}/{schema}/{table}"

    @property
    def lake(self) -> Lake:
        from ingestion.lake import open_lake

        return self._s3 if self._s3 is not None else open_lake(self.lake_uri)

    def record_build(self, publication: Publication, sources: Sequence[SourceMark]) -> BuildRecord:
        """Record `publication` as its table's last build (the lake's files its build had seen: `sources`)."""
        record = BuildRecord(
            schema=publication.schema,
            table=publication.table,
            built_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            kind=publication.kind,
            version=publication.version,
            sources=tuple(sources),
        )
        self.lake.put_bytes(f"{BUILDS_FOLDER}/{record.schema}/{record.table}.json", record.to_json())
        return record

    def builds(self) -> list[BuildRecord]:
        """The last build of every published table, by schema and table."""
        lake = self.lake
        records = []
        for info in sorted(lake.list(f"{BUILDS_FOLDER}/"), key=lambda info: info.key):
            if info.key.endswith(".json"):
                raw = lake.read_bytes(info.key)
                if raw is not None:
                    records.append(BuildRecord.from_json(raw, lake.uri_for(info.key)))
        return records

    def storage_options(self) -> dict[str, str] | None:
        """delta-rs's options for the lake's S3 endpoint, with the credentials boto3's chain resolves (the capture's
        own); None for a local lake."""
        if self._s3 is None:
            return None
        client = self._s3.client
        endpoint = str(client.meta.endpoint_url)
        options = {"AWS_REGION": client.meta.region_name or "us-east-1", "AWS_ENDPOINT_URL": endpoint}
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
        import boto3

        credentials = boto3.session.Session().get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options |= {"AWS_ACCESS_KEY_ID": str(frozen.access_key), "AWS_SECRET_ACCESS_KEY": str(frozen.secret_key)}
            if frozen.token:
                options["AWS_SESSION_TOKEN"] = frozen.token
        # One writer per table: the build of the one warehouse the lake belongs to (a second build of that
        # warehouse cannot start while it runs), so Delta's commits need no lock service beside S3.
        options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
        return options

    def version(self, schema: str, table: str) -> int | None:
        """The table's Delta version, None when it was never published."""
        existing = self.open(schema, table)
        return None if existing is None else existing.version()

    def holding(self, schema: str, table: str, content: str) -> Publication | None:
        """The table as it is, when its last commit published `content` (a digest of the rows and their columns,
        computed by the warehouse): a build that changed nothing in it then reads and compares nothing. None
        otherwise: a table not published yet, or last published with other content or without a digest."""
        existing = self.open(schema, table) if content else None
        if existing is None:
            return None
        last = existing.history(1)
        if not last or last[0].get(CONTENT) != content:
            return None
        return Publication(schema, table, self.location(schema, table), "unchanged", existing.version())

    def open(self, schema: str, table: str) -> DeltaTable | None:
        """The published table, None when there is none; a location that cannot be read is a PublishError."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        location = self.location(schema, table)
        options = self.storage_options()
        try:
            if not DeltaTable.is_deltatable(location, storage_options=options):
                return None
            return DeltaTable(location, storage_options=options)
        except (DeltaError, OSError) as exc:
            raise PublishError(f"{schema}.{table}", location, str(exc)) from exc

    def unchanged(self, schema: str, table: str) -> Publication:
        """The table as it is, which a build that changed nothing in it leaves (an error when it is not in the
        lake)."""
        location = self.location(schema, table)
        version = self.version(schema, table)
        if version is None:
            raise PublishError(f"{schema}.{table}", location, "not in the lake: it was never published, or removed")
        return Publication(schema, table, location, "unchanged", version)

    def publish(
        self,
        schema: str,
        table: str,
        rows: pa.Table,
        grain: Sequence[str],
        *,
        rewrite: bool = False,
        content: str | None = None,
    ) -> Publication:
        """Make the Delta table `<schema>/<table>` hold exactly `rows`, in one commit (see the module's docstring);
        `content`, the rows' digest, is kept in the commit for `holding`."""
        import pyarrow as pa
        from deltalake import CommitProperties, DeltaTable, write_deltalake
        from deltalake.exceptions import DeltaError

        location = self.location(schema, table)
        missing = [column for column in grain if column not in rows.column_names]
        if not grain or missing:
            reason = f"its grain {list(grain)} names columns it does not have: {missing}" if grain else "no grain"
            raise PublishError(f"{schema}.{table}", location, reason)
        # every column nullable: a column that holds no NULL today may hold one after the next build
        rows = rows.cast(pa.schema([field.with_nullable(True) for field in rows.schema]))
        options = self.storage_options()
        metadata = {"lago_mago.rows": str(rows.num_rows)} | ({CONTENT: content} if content else {})
        properties = CommitProperties(custom_metadata=metadata)
        try:
            existing = DeltaTable(location, storage_options=options) if self._exists(location, options) else None
            if existing is None or rewrite or _delta_columns(existing) != _delta_columns(rows):
                if existing is None and self._s3 is None:
                    Path(location).mkdir(parents=True, exist_ok=True)
                write_deltalake(
                    location,
                    rows,
                    mode="overwrite",
                    schema_mode="overwrite",
                    configuration={"delta.enableChangeDataFeed": "true"},
                    storage_options=options,
                    commit_properties=properties,
                )
                version = DeltaTable(location, storage_options=options).version()
                return Publication(schema, table, location, "created" if existing is None else "rewritten", version)
            merged = (
                existing.merge(
                    rows,
                    predicate=_on_grain(grain),
                    source_alias="s",
                    target_alias="t",
                    commit_properties=properties,
                )
                .when_matched_update_all(predicate=_differs(rows.column_names, grain))
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete()
                .execute()
            )
        except (DeltaError, OSError) as exc:
            raise PublishError(f"{schema}.{table}", location, str(exc)) from exc
        return self._merged(schema, table, merged, options)

    def publish_changes(self, schema: str, table: str, changes: pa.Table, grain: Sequence[str]) -> Publication:
        """Apply to the Delta table `<schema>/<table>` the latest change of each key of a change feed (`changes`: the
        table's columns and `_change_type`, one row per key of `grain`), in one commit: a delete removes the key's
        row, an insert or an update's post-image replaces it. A column the table lacks is added (its earlier rows
        hold NULL in it, as the warehouse's rows built before the column do)."""
        import pyarrow as pa
        from deltalake import CommitProperties, DeltaTable
        from deltalake.exceptions import DeltaError

        location = self.location(schema, table)
        options = self.storage_options()
        missing = [column for column in (*grain, CHANGE_TYPE) if column not in changes.column_names]
        if not grain or missing:
            raise PublishError(f"{schema}.{table}", location, f"changes without the columns {missing or ['grain']}")
        if not self._exists(location, options):
            raise PublishError(
                f"{schema}.{table}",
                location,
                "its last publication is not in the lake any more: publish it whole with "
                f"`dbt build --full-refresh --select {table}`",
            )
        existing = DeltaTable(location, storage_options=options)
        if changes.num_rows == 0:
            return Publication(schema, table, location, "unchanged", existing.version())
        changes = changes.cast(pa.schema([field.with_nullable(True) for field in changes.schema]))
        columns = [column for column in changes.column_names if column != CHANGE_TYPE]
        values = {_quote(column): f"s.{_quote(column)}" for column in columns}
        deleted = f"s.{CHANGE_TYPE} = 'delete'"
        properties = CommitProperties(custom_metadata={"lago_mago.changes": str(changes.num_rows)})
        try:
            merged = (
                existing.merge(
                    changes,
                    predicate=_on_grain(grain),
                    source_alias="s",
                    target_alias="t",
                    merge_schema=True,
                    commit_properties=properties,
                )
                .when_matched_delete(predicate=deleted)
                .when_matched_update(updates=values)
                .when_not_matched_insert(updates=values, predicate=f"not ({deleted})")
                .execute()
            )
        except (DeltaError, OSError) as exc:
            raise PublishError(f"{schema}.{table}", location, str(exc)) from exc
        return self._merged(schema, table, merged, options)

    def _merged(self, schema: str, table: str, metrics: dict[str, Any], options: dict[str, str] | None) -> Publication:
        """A MERGE's publication, from its metrics: what it inserted, updated and deleted, and the version it made."""
        from deltalake import DeltaTable

        location = self.location(schema, table)
        changed = (
            metrics["num_target_rows_inserted"],
            metrics["num_target_rows_updated"],
            metrics["num_target_rows_deleted"],
        )
        version = DeltaTable(location, storage_options=options).version()
        return Publication(schema, table, location, "merged" if any(changed) else "unchanged", version, *changed)

    @staticmethod
    def _exists(location: str, options: dict[str, str] | None) -> bool:
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(location, storage_options=options))


def _on_grain(grain: Sequence[str]) -> str:
    """A MERGE's condition: target `t` and source `s` rows have the same grain, NULL equal to NULL."""
    return " and ".join(f"(t.{_quote(column)} is not distinct from s.{_quote(column)})" for column in grain)


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _differs(columns: Sequence[str], grain: Sequence[str]) -> str | None:
    """A matched row is updated only when one of its values differs (NULLs equal)."""
    values = [c for c in columns if c not in grain]
    if not values:
        return None
    return " or ".join(f"(t.{_quote(c)} is distinct from s.{_quote(c)})" for c in values)


def _delta_columns(table: DeltaTable | pa.Table) -> list[tuple[str, str]]:
    """Column names and Delta types, which a rewrite must change in the published table when they differ."""
    from deltalake import DeltaTable, Schema

    schema = table.schema() if isinstance(table, DeltaTable) else Schema.from_arrow(table.schema)
    return [(field.name, str(field.type)) for field in schema.fields]
