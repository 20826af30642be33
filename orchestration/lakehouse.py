"""The Dagster definitions of Lago Mago, built from the settings (`orchestration.definitions` loads them).

Capture (one multi-asset per declared source) feeds dbt (one asset per model, tests as
checks); the job `capture_then_build` materialises all of it, the schedule runs that job every six hours.
"""

from __future__ import annotations

import dagster as dg

from ingestion.catalog import load_catalog
from orchestration.capture import capture_assets
from orchestration.dbt import dbt_build_assets, dbt_project, dbt_resource
from orchestration.settings import Settings

JOB_NAME = "capture_then_build"
SCHEDULE_NAME = "capture_then_build_schedule"


def build_definitions(settings: Settings) -> dg.Definitions:
    catalog = load_catalog(project=settings.project_dir)
    captures = [capture_assets(catalog, source, settings) for source in catalog.sources.values()]
    project = dbt_project(settings)
    dbt = dbt_build_assets(project, settings)
    job = dg.define_asset_job(
        JOB_NAME,
        selection=dg.AssetSelection.assets(*captures, dbt),
        description="Capture every declared source into the lake, then `dbt build` the warehouse.",
        # the instance's run queue admits one run per value of this tag (.dagster/dagster.yaml)
        tags=settings.run_tags,
    )
    schedule = dg.ScheduleDefinition(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule=settings.cron,
        execution_timezone="UTC",
        tags=settings.run_tags,
        description=f"Capture then build on `{settings.cron}` (env LAGO_SCHEDULE_CRON).",
    )
    return dg.Definitions(
        assets=[*captures, dbt],
        jobs=[job],
        schedules=[schedule],
        resources={"dbt": dbt_resource(project)},
    )
