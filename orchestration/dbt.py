"""Every dbt model and snapshot as a Dagster asset (dagster-dbt), each dbt test as an asset check; the sample seeds
are left out."""

import json
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from ingestion.dbt_packages import ensure_installed
from ingestion.freshness import published_freshness
from ingestion.published_tables import PublishedTables
from orchestration.capture import CHANGED, retry_policy
from orchestration.manifest import manifest_outdated, prepare
from orchestration.settings import Settings

DBT_ASSETS_NAME = "dbt_build"


# the project's sample seeds are test data, not a product of the pipeline: no asset
EXCLUDED = "resource_type:seed"


class LagoMagoTranslator(DagsterDbtTranslator):
    """Groups follow the project's layers: the model folders (bronze, history, silver, gold), and the snapshots of
    published Gold (snapshots/)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        resource_type = dbt_resource_props.get("resource_type")
        if resource_type == "snapshot":
            return "snapshots"
        fqn = dbt_resource_props.get("fqn") or []
        # fqn is [project, folder, ..., name]: the first folder under models/ is the layer
        return str(fqn[1]) if resource_type == "model" and len(fqn) > 2 else "dbt"


def dbt_project(settings: Settings) -> DbtProject:
    """The project of this checkout, its local packages installed (`dbt deps`) when a fresh clone has not yet; its
    manifest is parsed when missing, and under `dg` (dev, launch, list) when the project changed since
    (orchestration/manifest.py)."""
    ensure_installed(settings.project_dir)
    project = DbtProject(
        project_dir=settings.project_dir,
        target_path=settings.dbt_target_path,
        profiles_dir=settings.project_dir / "profiles",
        target=settings.dbt_target,
    )
    if not project.manifest_path.exists() or (project.preparer.using_dagster_dev() and manifest_outdated(project)):
        prepare(project)
    return project


def project_manifest(project: DbtProject) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(project.manifest_path.read_text(encoding="utf-8"))
    return loaded


def dbt_resource(project: DbtProject) -> DbtCliResource:
    return DbtCliResource(project_dir=project, profiles_dir=str(project.profiles_dir), target=project.target)


class DbtBuildFailed(dg.Failure):
    """`dbt build` ended with failures; the message names the nodes."""


def _failures(run_results: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The nodes whose tests failed (data: a retry changes nothing) and the nodes that errored (maybe transient)."""
    failed, errored = [], []
    for result in run_results.get("results", []):
        node = str(result.get("unique_id", "?"))
        if result.get("status") == "fail":
            failed.append(node)
        elif result.get("status") in ("error", "runtime error"):
            errored.append(node)
    return failed, errored


def _captures_of_run(context: dg.AssetExecutionContext) -> dict[dg.AssetKey, bool]:
    """The capture assets this run materialised before the build, each with whether it published a change."""
    records = context.instance.get_records_for_run(
        run_id=context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    captures: dict[dg.AssetKey, bool] = {}
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is not None and CHANGED in materialization.metadata:
            changed = materialization.metadata[CHANGED]
            captures[materialization.asset_key] = bool(getattr(changed, "value", changed))
    return captures


def unchanged_lineage(manifest: Mapping[str, Any], captures: Mapping[dg.AssetKey, bool]) -> list[str]:
    """The dbt nodes (models, snapshots, tests) whose every upstream source is a capture of this run that changed
    nothing: a build would change none of their rows. A node fed by a capture that changed, or by a source this run
    did not capture (another run may have), is built.

    dagster-dbt unions a `--select` passed at run time with the run's own selection, so the lineage of the changed
    captures is reached by excluding the rest."""
    unchanged: set[str] = set()
    for unique_id, source in manifest.get("sources", {}).items():
        if captures.get(dg.AssetKey([source["source_name"], source["name"]])) is False:
            unchanged.add(unique_id)
    parents: Mapping[str, list[str]] = manifest.get("parent_map", {})
    feeding: dict[str, set[str]] = {}

    def sources_of(node: str) -> set[str]:
        if node.startswith("source."):
            return {node}
        if node not in feeding:
            feeding[node] = set()  # a cycle cannot occur in dbt's DAG; this only guards the recursion
            feeding[node] = set().union(*(sources_of(parent) for parent in parents.get(node, [])))
        return feeding[node]

    excluded = []
    for unique_id, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") not in ("model", "snapshot", "test"):
            continue
        upstream = sources_of(unique_id)
        if upstream and upstream <= unchanged:
            excluded.append(str(node["name"]))
    return sorted(excluded)


def published_tables(
    manifest: Mapping[str, Any], settings: Settings, selected: AbstractSet[dg.AssetKey]
) -> Iterator[dg.AssetObservation]:
    """For each selected model the DuckDB build publishes into the lake (macros/publish/publish_to_lake.sql): its
    Delta table's location and version, once it was published, and how fresh it is (its last build, the last
    capture of its sources, `fresh` or what it does not reflect yet: ingestion/freshness.py). On Spark every model
    is a Delta table already and none is published."""
    tables = PublishedTables(settings.lake_uri)
    freshness = {row.table: row for row in published_freshness(settings.lake_uri)}
    translator = LagoMagoTranslator()
    for node in manifest.get("nodes", {}).values():
        config = node.get("config", {})
        if node.get("resource_type") != "model" or config.get("materialized") == "view":
            continue
        if not (config.get("meta") or {}).get("publish_to_lake"):
            continue
        key = translator.get_asset_key(node)
        if key not in selected:
            continue
        version = tables.version(node["schema"], node["alias"])
        if version is not None:
            location = tables.location(node["schema"], node["alias"])
            metadata: dict[str, Any] = {"published_table": dg.MetadataValue.path(location), "delta_version": version}
            fresh = freshness.get(f"{node['schema']}.{node['alias']}")
            if fresh is not None:
                metadata["built_at"] = dg.MetadataValue.timestamp(fresh.built_at)
                if fresh.last_capture is not None:
                    metadata["last_capture"] = dg.MetadataValue.timestamp(fresh.last_capture)
                metadata["freshness"] = fresh.describe()
            yield dg.AssetObservation(asset_key=key, metadata=metadata)


def dbt_build_assets(project: DbtProject, settings: Settings) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        name=DBT_ASSETS_NAME,
        exclude=EXCLUDED,
        dagster_dbt_translator=LagoMagoTranslator(),
        retry_policy=retry_policy(settings),
        pool="lake",
    )
    def build(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        captures = _captures_of_run(context)
        if captures and not any(captures.values()):
            # every model is a function of the lake's changes: without a new file, a build would change no row
            context.log.info("no capture of this run changed anything (%d captured): no dbt build", len(captures))
            return
        # one target folder for every run: dbt's partial parsing then skips the 15-20 s of a full parse; unit tests
        # check the project's code, not the data: CI runs them, a production build need not
        args = ["build", "--exclude-resource-type", "unit_test"]
        skipped = unchanged_lineage(project_manifest(project), captures)
        if skipped:
            context.log.info("not built, their captures changed nothing: %s", ", ".join(skipped))
            # one value, as dbt's own space-separated list: dagster-dbt reads --exclude as a single-value flag
            args += ["--exclude", " ".join(skipped)]
        invocation = dbt.cli(args, context=context, raise_on_error=False, target_path=project.target_path)
        # each event carries dbt's own timing ("Execution Duration") as asset metadata
        yield from invocation.stream()
        # the build's on-run-end hook published Gold into the lake: each table's Delta version, as an observation
        yield from published_tables(project_manifest(project), settings, context.selected_asset_keys)
        if invocation.is_successful():
            return
        failed, errored = _failures(invocation.get_artifact("run_results.json"))
        if failed and not errored:
            raise DbtBuildFailed(f"dbt tests failed: {', '.join(failed)}", allow_retries=False)
        nodes = ", ".join(errored) or "see the run's logs"
        raise DbtBuildFailed(f"dbt build failed (exit code {invocation.process.returncode}): {nodes}")

    return build
