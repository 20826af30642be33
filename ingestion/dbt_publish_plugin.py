"""The dbt-duckdb plugin that publishes the warehouse's tables into the lake (ingestion/published_tables.py).

The project's `on-run-end` hook (macros/publish/publish_to_lake.sql) stages each table to publish as a Parquet file
beside the warehouse and hands it here through dbt-duckdb's `adapter.store_relation`; the plugin makes the table's
Delta copy equal to it and removes the staged file. Configured in profiles.yml:

    plugins:
      - module: ingestion.dbt_publish_plugin
        alias: lago_publish
        config: {lake: "{{ env_var('LAKE_URI', 'lake') }}"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from dbt.adapters.events.logging import AdapterLogger

from ingestion.published_tables import PublishedTables

logger = AdapterLogger("lago_publish")


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # the lake is opened at the first publication: a build that publishes nothing never touches it
        self.lake_uri = str(plugin_config.get("lake") or "lake")
        self._tables: PublishedTables | None = None

    def store(self, target_config: TargetConfig) -> None:
        import pyarrow.parquet as pq

        if self._tables is None:
            self._tables = PublishedTables(self.lake_uri)
        assert target_config.location is not None
        staged = Path(target_config.location.path)
        relation, config = target_config.relation, target_config.config
        try:
            rows = pq.read_table(staged)
            schema, table = str(relation.schema), str(relation.identifier)
            publication = self._tables.publish(
                schema, table, rows, list(config["grain"]), rewrite=bool(config["rewrite"])
            )
        finally:
            staged.unlink(missing_ok=True)
        logger.info(f"published {publication.describe()}")
