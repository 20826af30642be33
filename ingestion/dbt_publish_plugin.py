"""The dbt-duckdb plugin that publishes the warehouse's tables into the lake (ingestion/published_tables.py).

It gives the warehouse's connection four SQL functions:

- `lago_publish(schema, model, staged, grain, rewrite, sources, content)` makes the Delta table of
  `<lake>/tables/<schema>/<model>/` equal to the Parquet file `staged`, whose rows' digest is `content` (a table
  whose last publication holds that digest is left as it is, and the file is not even read);
- `lago_publish_changes(schema, model, staged, grain, sources)` applies to it the changes in `staged` (a change
  feed's latest change per key);
- `lago_publish_nothing(schema, model, sources)` records a build that changed nothing in the table;
- `lago_published_version(schema, model)` is the Delta version of the table in the lake, -1 when there is none;
- `lago_mark_lake_captures()` takes the lake's files per source table, as the build starts (on-run-start).

Each publication removes its staged file, records the build (with the marks of `sources`, the JSON list of the
source tables upstream of the model) and returns what it did. The project's `on-run-end` hook
(macros/publish/publish_to_lake.sql) stages each table to publish and calls them, so a failed publication fails the
hook's statement with the table, the location and the reason, as any failed SQL does.
Configured in profiles.yml:

    plugins:
      - module: ingestion.dbt_publish_plugin
        config: {lake: "{{ env_var('LAKE_URI', 'lake') }}"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.events.logging import AdapterLogger

from ingestion.freshness import lake_marks
from ingestion.published_tables import Publication, PublishedTables, SourceMark
from ingestion.published_views import register_lake_filesystem

if TYPE_CHECKING:
    import pyarrow as pa

FUNCTION = "lago_publish"
CHANGES_FUNCTION = "lago_publish_changes"
VERSION_FUNCTION = "lago_published_version"
UNCHANGED_FUNCTION = "lago_publish_nothing"
MARK_FUNCTION = "lago_mark_lake_captures"
logger = AdapterLogger("lago_publish")


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # the lake is opened at the first publication: a build that publishes nothing never touches it
        self.lake_uri = str(plugin_config.get("lake") or "lake")
        self._tables: PublishedTables | None = None
        # the lake's files per source table as this build started (mark_lake_captures); kept here, not in the
        # warehouse, so a build that fails changes nothing there
        self._marks: dict[str, SourceMark] | None = None

    def configure_connection(self, conn: Any) -> None:
        import duckdb

        # the models read the lake's files, and this plugin writes its tables, through DuckDB
        register_lake_filesystem(conn, self.lake_uri)
        text, flag = duckdb.sqltype("VARCHAR"), duckdb.sqltype("BOOLEAN")
        conn.create_function(
            FUNCTION, self.publish, [text, text, text, text, flag, text, text], text, side_effects=True
        )
        conn.create_function(CHANGES_FUNCTION, self.publish_changes, [text] * 5, text, side_effects=True)
        conn.create_function(UNCHANGED_FUNCTION, self.publish_nothing, [text] * 3, text, side_effects=True)
        conn.create_function(
            VERSION_FUNCTION, self.published_version, [text, text], duckdb.sqltype("BIGINT"), side_effects=True
        )
        conn.create_function(MARK_FUNCTION, self.mark_lake_captures, [], duckdb.sqltype("BIGINT"), side_effects=True)

    @property
    def tables(self) -> PublishedTables:
        if self._tables is None:
            self._tables = PublishedTables(self.lake_uri)
        return self._tables

    def publish(
        self, schema: str, model: str, staged: str, grain: str, rewrite: bool, sources: str, content: str
    ) -> str:
        """`lago_publish`: the table whole, in `staged`, with `content` its digest (nothing is read when the lake's
        table holds that content already)."""
        held = None if rewrite else self.tables.holding(schema, model, content)
        if held is not None:
            Path(staged).unlink(missing_ok=True)
            return self._recorded(held, sources)
        rows = _read_staged(staged)
        publication = self.tables.publish(
            schema, model, rows, list(json.loads(grain)), rewrite=rewrite, content=content
        )
        return self._recorded(publication, sources)

    def publish_nothing(self, schema: str, model: str, sources: str) -> str:
        """`lago_publish_nothing`: the build changed nothing in the table; its build is recorded."""
        return self._recorded(self.tables.unchanged(schema, model), sources)

    def publish_changes(self, schema: str, model: str, staged: str, grain: str, sources: str) -> str:
        """`lago_publish_changes`: the latest change of each key of the table's feed since its last publication."""
        changes = _read_staged(staged)
        publication = self.tables.publish_changes(schema, model, changes, list(json.loads(grain)))
        return self._recorded(publication, sources)

    def published_version(self, schema: str, model: str) -> int:
        """`lago_published_version`: the Delta version of the table's publication, -1 when the lake has none."""
        version = self.tables.version(schema, model)
        return -1 if version is None else version

    def mark_lake_captures(self) -> int:
        """`lago_mark_lake_captures`: take the lake's files per source table now, as the build starts (the
        project's on-run-start hook, before any model lists the lake); how many source tables have files."""
        self._marks = lake_marks(self.tables.lake)
        return len(self._marks)

    def _recorded(self, publication: Publication, sources: str) -> str:
        if self._marks is None:
            # no mark taken as the build started (a project without the hook): the files now, which may count a
            # file that landed during the build as seen
            self.mark_lake_captures()
        marks = self._marks or {}
        names = [str(name) for name in json.loads(sources or "[]")]
        self.tables.record_build(publication, [marks.get(name) or SourceMark(name, 0, None) for name in names])
        logger.info(f"published {publication.describe()}")
        return publication.describe()


def _read_staged(staged: str) -> pa.Table:
    """The staged Parquet file's rows; the file is removed whatever happens next."""
    import pyarrow.parquet as pq

    path = Path(staged)
    try:
        # one file, read as one: `pq.read_table` would go through pyarrow's dataset module, whose import alone is
        # about 0.2 s of every build that publishes
        with pq.ParquetFile(path) as staged_file:
            return staged_file.read()
    finally:
        path.unlink(missing_ok=True)
