"""Where the orchestrated lakehouse lives, read from the same environment variables as the CLI and dbt."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ingestion.catalog import PROJECT_ROOT

# every six hours, as the reference tool's own scheduler does by default
DEFAULT_CRON = "0 */6 * * *"
# the run tag that the instance's run queue limits to one run per value (.dagster/dagster.yaml)
LAKE_TAG = "lago_mago/lake"


def _resolve(value: str, root: Path) -> str:
    """A relative local path is taken from the project root: dbt runs there, so both halves see one folder."""
    if "://" in value or Path(value).is_absolute():
        return value
    return str((root / value).resolve())


@dataclass(frozen=True)
class Settings:
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
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """LAKE_URI and DUCKDB_PATH with the CLI's and the dbt profile's defaults; LAGO_* for the rest."""
        env = os.environ if env is None else env
        root = Path(env.get("LAGO_PROJECT_DIR") or PROJECT_ROOT).resolve()
        return cls(
            project_dir=root,
            lake_uri=_resolve(env.get("LAKE_URI") or "lake", root),
            duckdb_path=_resolve(env.get("DUCKDB_PATH") or "warehouse/lago_mago.duckdb", root),
            dbt_target=env.get("LAGO_DBT_TARGET") or "dev",
            # dbt's artefacts for Dagster's runs, apart from the ones of dbt run by hand
            dbt_target_path=Path(_resolve(env.get("LAGO_DBT_TARGET_PATH") or "target/dagster", root)),
            cron=env.get("LAGO_SCHEDULE_CRON") or DEFAULT_CRON,
            max_retries=int(env.get("LAGO_MAX_RETRIES") or 3),
            retry_delay_seconds=float(env.get("LAGO_RETRY_DELAY_SECONDS") or 30),
            lock_wait_seconds=float(env.get("LAGO_LOCK_WAIT_SECONDS") or 300),
        )

    @property
    def run_tags(self) -> dict[str, str]:
        return {LAKE_TAG: self.lake_uri}
