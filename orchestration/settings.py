"""Where the orchestrated lakehouse lives: the Dagster view of `ingestion.config`, which reads every variable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ingestion.config import Config

# the run tag that the instance's run queue limits to one run per value (.dagster/dagster.yaml)
LAKE_TAG = "lago_mago/lake"
# Dagster's lake when LAKE_URI is unset: the CLI's `./lake`, taken from the project directory
PROJECT_LAKE = "lake"


def _resolve(value: str, root: Path) -> str:
    """A relative local path is taken from the project root: dbt runs there, so both halves see one folder."""
    if "://" in value or Path(value).is_absolute():
        return value
    return str((root / value).resolve())


@dataclass(frozen=True)
class Settings:
    config: Config
    project_dir: Path
    lake_uri: str
    duckdb_path: str
    dbt_target: str
    dbt_target_path: Path
    cron: str
    max_retries: int
    retry_delay_seconds: float
    lock_wait_seconds: float

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        """The configuration's paths resolved from the project directory, with the CLI's and dbt's defaults."""
        root = config.project_dir
        dagster = config.orchestration
        return cls(
            config=config,
            project_dir=root,
            lake_uri=_resolve(config.lake_uri or PROJECT_LAKE, root),
            duckdb_path=_resolve(dagster.duckdb_path, root),
            dbt_target=dagster.dbt_target,
            dbt_target_path=Path(_resolve(dagster.dbt_target_path, root)),
            cron=dagster.cron,
            max_retries=dagster.max_retries,
            retry_delay_seconds=dagster.retry_delay_seconds,
            lock_wait_seconds=dagster.lock_wait_seconds,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return cls.from_config(Config.from_env(env))

    @property
    def run_tags(self) -> dict[str, str]:
        return {LAKE_TAG: self.lake_uri}
