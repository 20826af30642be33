"""The dbt project on the `databricks` target, without a workspace: it parses, and what can compile offline does.

Placeholder credentials point at a host that cannot resolve (`.invalid`). dbt-databricks connects to compile
an incremental model (it asks the warehouse about the existing table), so only the nodes that compile from
the project alone are compiled: tables, views, ephemeral models, snapshots, seeds and the tests on them.
Every dbt call runs in a subprocess with a timeout, so a connection attempt fails the test instead of hanging it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
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


# -- one set of layer schemas per developer on a shared warehouse, plain names in production and locally ----------

LAYERS = ("bronze", "silver", "gold", "history", "snapshots")
# what a macro outside a model (packages/lago_cdc/macros/lake.sql) asks for: each layer's schema with no node
LAYER_SCHEMAS_SQL = "select " + ", ".join(
    f"'{{{{ generate_schema_name('{layer}', none) }}}}' as {layer}" for layer in LAYERS
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "env", "prefix"),
    [
        # a developer on the shared workspace: the login name, made a valid schema name
        ("databricks", {"DATABRICKS_SCHEMA": None, "USER": "Ada.Love-lace"}, "ada_love_lace_"),
        # or the schema the developer chose (the login name is then not needed)
        ("databricks", {"DATABRICKS_SCHEMA": "dev_grace", "USER": None}, "dev_grace_"),
        # the production job's target
        ("databricks_prod", {"DATABRICKS_SCHEMA": None, "USER": None}, ""),
        ("databricks_prod", {"DATABRICKS_SCHEMA": "lago_mago", "USER": "ada"}, ""),
        # private warehouses: a DuckDB file, a Spark session on this machine
        ("dev", {"USER": None}, ""),
        ("spark", {"USER": "ada"}, ""),
    ],
    ids=["databricks-login", "databricks-schema", "prod-default", "prod-schema", "duckdb", "spark"],
)
def test_layer_schemas_per_target(
    tmp_path_factory: pytest.TempPathFactory, target: str, env: dict[str, str | None], prefix: str
) -> None:
    site = Dbt.at(tmp_path_factory.mktemp(f"schemas-{target}"), target=target, env={**PLACEHOLDER_ENV, **env})
    # an inline compile parses the project (manifest.json) and renders the macro as lake.sql calls it
    result = run_dbt(
        site, "compile", "--no-populate-cache", "--no-introspect", "--quiet", "--inline", LAYER_SCHEMAS_SQL
    )
    assert result.returncode == 0, output(result)
    expected = {layer: f"{prefix}{layer}" for layer in LAYERS}
    compiled = result.stdout.strip().splitlines()[-1]
    assert compiled == "select " + ", ".join(f"'{schema}' as {layer}" for layer, schema in expected.items())

    nodes = site.artifact("manifest.json")["nodes"].values()
    by_layer: dict[str, set[str]] = {}
    for node in nodes:
        if node["resource_type"] in ("model", "snapshot") and node["config"].get("schema"):
            by_layer.setdefault(node["config"]["schema"], set()).add(node["schema"])
    # every model of a layer in that layer's schema, the same one the macros use
    assert by_layer == {layer: {schema} for layer, schema in expected.items()}


def test_a_developer_without_a_schema_or_login_name_is_stopped(tmp_path: Path) -> None:
    """No DATABRICKS_SCHEMA and no USER: dbt stops naming the variable, rather than share a default schema."""
    site = Dbt.at(tmp_path, target="databricks", env={**PLACEHOLDER_ENV, "DATABRICKS_SCHEMA": None, "USER": None})
    result = run_dbt(site, "parse")
    assert result.returncode == 2, output(result)
    assert "Env var required but not provided: 'USER'" in output(result)
    assert not (site.target_path / "manifest.json").exists()
