"""The dbt-duckdb plugin of the `lake` target: an in-memory DuckDB whose `<schema>.<model>` are the tables the
builds published into the lake (ingestion/published_views.py), so that

    dbt show --target lake --inline "select * from {{ ref('gold_points_monthly_report') }}"

reads Silver and Gold while a build runs, and the build never fails because of it (it never opens the
warehouse's file). Each dbt command reads the versions published when it connected.

The target builds nothing: the project's `on-run-start` hook calls `lago_mark_lake_captures()`, which here answers
-1, and the hook then stops the command with the reason before any model runs (macros/publish/publish_to_lake.sql).
Configured in profiles.yml:

    plugins:
      - module: ingestion.dbt_lake_plugin
        config: {lake: "{{ env_var('LAKE_URI', 'lake') }}"}
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from ingestion.dbt_publish_plugin import MARK_FUNCTION
from ingestion.published_views import attach_published, register_lake_filesystem

# what `lago_mark_lake_captures()` answers on a target that reads the published tables (the build's plugin: >= 0)
READS_ONLY = -1


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.lake_uri = str(plugin_config.get("lake") or "lake")

    def configure_connection(self, conn: Any) -> None:
        import duckdb

        register_lake_filesystem(conn, self.lake_uri)
        attach_published(conn, self.lake_uri)
        conn.create_function(MARK_FUNCTION, _reads_only, [], duckdb.sqltype("BIGINT"), side_effects=True)


def _reads_only() -> int:
    return READS_ONLY
