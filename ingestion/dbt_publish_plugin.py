"""The dbt-duckdb plugin that publishes the warehouse's tables into the lake (ingestion/published_tables.py).

It gives the warehouse's connection one SQL function, `lago_publish(schema, model, staged, grain, rewrite, sources)`,
which makes the Delta table of `<lake>/tables/<schema>/<model>/` equal to the Parquet file `staged`, removes that
file, records the build (with `sources`, the JSON list of the upstream source tables' files as the build started)
and returns what it did. The project's `on-run-end` hook (macros/publish/publish_to_lake.sql) stages each table to
publish and calls it, so a failed publication fails the hook's statement with the table, the location and the
reason, as any failed SQL does. Configured in profiles.yml:

    plugins:
      - module: ingestion.dbt_publish_plugin
        config: {lake: "{{ env_var('LAKE_URI', 'lake') }}"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.events.logging import AdapterLogger

from ingestion.published_tables import PublishedTables, SourceMark

FUNCTION = "lago_publish"
logger = AdapterLogger("lago_publish")


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # the lake is opened at the first publication: a build that publishes nothing never touches it
        self.lake_uri = str(plugin_config.get("lake") or "lake")
        self._tables: PublishedTables | None = None

    def configure_connection(self, conn: Any) -> None:
        import duckdb

        text, flag = duckdb.sqltype("VARCHAR"), duckdb.sqltype("BOOLEAN")
        conn.create_function(FUNCTION, self.publish, [text, text, text, text, flag, text], text, side_effects=True)

    def publish(self, schema: str, model: str, staged: str, grain: str, rewrite: bool, sources: str) -> str:
        import pyarrow.parquet as pq

        if self._tables is None:
            self._tables = PublishedTables(self.lake_uri)
        path = Path(staged)
        try:
            rows = pq.read_table(path)
            publication = self._tables.publish(schema, model, rows, list(json.loads(grain)), rewrite=rewrite)
        finally:
            path.unlink(missing_ok=True)
        marks = [SourceMark(m["table"], int(m["files"]), m.get("newest_capture")) for m in json.loads(sources or "[]")]
        self._tables.record_build(publication, marks)
        logger.info(f"published {publication.describe()}")
        return publication.describe()
