"""The dbt project on the `databricks` target, without a workspace: it parses, and what can compile offline does.

Placeholder credentials point at a host that cannot resolve (`.invalid`). dbt-databricks connects to compile
an incremental model (it asks the warehouse about the existing table), so only the nodes that compile from
the project alone are compiled: tables, views, ephemeral models, snapshots, seeds and the tests on them.
Every dbt call runs in a subprocess with a timeout, so a connection attempt fails the test instead of hanging it.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from support.dbt import Dbt

OFFLINE_NODES = (
    "config.materialized:table config.materialized:view config.materialized:ephemeral "
    "resource_type:snapshot resource_type:seed"
)
PLACEHOLDER_ENV = {
    "DATABRICKS_HOST": "workspace.invalid",
    "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/0000000000000000",
    "DATABRICKS_TOKEN": "placeholder-token",
    "DATABRICKS_CATALOG": "lago_mago_ci",
    "DATABRICKS_SCHEMA": "lago_mago",
}


def run_dbt(site: Dbt, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """dbt on the databricks target, writing its artefacts and logs under the site's folder (not target/)."""
    try:
        return site(*args, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`dbt {' '.join(args)}` ran over {timeout:.0f} s: did it try to reach the placeholder host? {exc}")


def output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr)[-6000:]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dbt, dict[str, Any]]:
    # none of the caller's DBT_* variables (DBT_HOST, DBT_ACCESS_TOKEN) reaches dbt
    site = Dbt.at(tmp_path_factory.mktemp("dbt-databricks"), target="databricks", env=PLACEHOLDER_ENV)
    result = run_dbt(site, "parse", "--no-partial-parse")
    assert result.returncode == 0, output(result)
    return site, site.artifact("manifest.json")


def test_the_project_parses_for_databricks(manifest: tuple[Dbt, dict[str, Any]]) -> None:
    _, parsed = manifest
    assert parsed["metadata"]["adapter_type"] == "databricks"
    models = [node for node in parsed["nodes"].values() if node["resource_type"] == "model"]
    assert models, "the project has no model"
    # the catalog and schema come from the environment, as in the job's cluster
    assert {node["database"] for node in models} == {PLACEHOLDER_ENV["DATABRICKS_CATALOG"]}


def test_every_node_that_needs_no_connection_compiles(manifest: tuple[Dbt, dict[str, Any]]) -> None:
    site, parsed = manifest
    result = run_dbt(site, "compile", "--no-populate-cache", "--no-introspect", "--select", *OFFLINE_NODES.split())
    assert result.returncode == 0, output(result)

    expected = {
        unique_id
        for unique_id, node in parsed["nodes"].items()
        if node["resource_type"] == "snapshot"
        or (node["resource_type"] == "model" and node["config"]["materialized"] in ("table", "view", "ephemeral"))
    }
    assert expected, "no table, view or snapshot to compile"
    results = site.artifact("run_results.json")["results"]
    statuses = {result["unique_id"]: result["status"] for result in results}
    assert {unique_id: statuses.get(unique_id) for unique_id in expected} == dict.fromkeys(expected, "success")
    compiled = site.artifact("manifest.json")["nodes"]
    empty = sorted(unique_id for unique_id in expected if not (compiled[unique_id].get("compiled_code") or "").strip())
    assert not empty, f"compiled to nothing: {empty}"
