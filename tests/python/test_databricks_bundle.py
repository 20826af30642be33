"""The Databricks Asset Bundle's job, checked without a workspace: tasks, order, commands, schedule, retries."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "databricks.yml"
JOB_NAME = "lago_mago"


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path.name} is not a YAML mapping"
    return document


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return load(BUNDLE)


@pytest.fixture(scope="module")
def resource_files(bundle: dict[str, Any]) -> list[Path]:
    files = sorted({path for pattern in bundle["include"] for path in ROOT.glob(pattern)})
    assert files, f"databricks.yml includes {bundle['include']}, which match no file"
    return files


@pytest.fixture(scope="module")
def job(resource_files: list[Path]) -> dict[str, Any]:
    jobs: dict[str, Any] = {}
    for path in resource_files:
        for name, definition in load(path).get("resources", {}).get("jobs", {}).items():
            assert name not in jobs, f"job {name} is defined twice"
            jobs[name] = definition
    assert JOB_NAME in jobs, f"no job {JOB_NAME} among {sorted(jobs)}"
    found: dict[str, Any] = jobs[JOB_NAME]
    return found


@pytest.fixture(scope="module")
def tasks(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    by_key = {task["task_key"]: task for task in job["tasks"]}
    assert len(by_key) == len(job["tasks"]), "task keys must be unique"
    return by_key


def test_the_bundle_has_dev_and_prod_targets(bundle: dict[str, Any]) -> None:
    assert bundle["bundle"]["name"] == JOB_NAME
    targets = bundle["targets"]
    assert set(targets) == {"dev", "prod"}
    assert targets["dev"]["mode"] == "development" and targets["dev"]["default"] is True
    assert targets["prod"]["mode"] == "production"
    # dev and prod must never write the same tables or the same lake
    for variable in ("catalog", "lake_uri"):
        assert targets["dev"]["variables"][variable] != targets["prod"]["variables"][variable]


def test_ingestion_runs_first_then_dbt_build(tasks: dict[str, dict[str, Any]]) -> None:
    assert list(tasks) == ["ingestion", "dbt_build"]
    assert "depends_on" not in tasks["ingestion"]
    assert tasks["dbt_build"]["depends_on"] == [{"task_key": "ingestion"}]
    # the default run_if (all upstream tasks succeeded) keeps dbt from building on a failed capture
    assert tasks["dbt_build"].get("run_if", "ALL_SUCCESS") == "ALL_SUCCESS"


def test_ingestion_runs_the_console_script_of_the_wheel(tasks: dict[str, dict[str, Any]]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wheel_task = tasks["ingestion"]["python_wheel_task"]
    assert wheel_task["package_name"].replace("_", "-") == project["name"]
    assert wheel_task["entry_point"] in project["scripts"]
    assert wheel_task["parameters"][0] == "run"
    assert "--lake" in wheel_task["parameters"]
    assert {"whl": "../dist/*.whl"} in tasks["ingestion"]["libraries"]


def test_the_wheel_artifact_is_built_from_this_project(bundle: dict[str, Any]) -> None:
    (artifact,) = bundle["artifacts"].values()
    assert artifact["type"] == "whl"
    assert artifact["path"] == "."
    assert "dist" in artifact["build"]


def dbt_target(bundle: dict[str, Any], bundle_target: str) -> str:
    """The value of the job's `${var.dbt_target}` when the bundle is deployed with `-t bundle_target`."""
    variable = bundle["variables"]["dbt_target"]
    value: str = bundle["targets"][bundle_target].get("variables", {}).get("dbt_target", variable.get("default"))
    return value


def dbt_build_options(command: str) -> dict[str, Any]:
    """The options of a `dbt build` command line as dbt's command-line parser reads them (nothing runs)."""
    from dbt.cli.main import cli

    program, name, *args = shlex.split(command)
    assert (program, name) == ("dbt", "build")
    with cli.commands[name].make_context(name, args) as context:
        return dict(context.params)


def test_dbt_builds_the_databricks_targets_of_this_project(
    bundle: dict[str, Any], tasks: dict[str, dict[str, Any]]
) -> None:
    dbt_task = tasks["dbt_build"]["dbt_task"]
    build = "dbt build --target ${var.dbt_target} --exclude-resource-type unit_test"
    assert dbt_task["commands"] == ["dbt deps", build]
    # the production build leaves out the unit tests (CI runs them), with an option dbt's own parser takes
    selected = dbt_build_options(build.replace("${var.dbt_target}", "databricks_prod"))
    assert selected["target"] == "databricks_prod"
    assert list(selected["exclude_resource_types"]) == ["unit_test"]
    # paths are relative to resources/, then to the project directory
    project_dir = (ROOT / "resources" / dbt_task["project_directory"]).resolve()
    assert (project_dir / "dbt_project.yml").is_file()
    profiles = load(project_dir / dbt_task["profiles_directory"] / "profiles.yml")
    outputs = profiles[load(project_dir / "dbt_project.yml")["profile"]]["outputs"]
    # production builds the plain layer schemas; a development deployment the deploying user's own
    assert dbt_target(bundle, "prod") == "databricks_prod"
    assert bundle["variables"]["dbt_target"]["default"] == "databricks_prod"
    assert dbt_target(bundle, "dev") == "databricks"
    assert bundle["targets"]["dev"]["variables"]["schema"] == "${workspace.current_user.short_name}"
    for name in ("databricks", "databricks_prod"):
        assert outputs[name]["type"] == "databricks", name
    # a warehouse_id would make Databricks generate its own profiles and ignore profiles_directory
    assert "warehouse_id" not in dbt_task
    packages = [library["pypi"]["package"] for library in tasks["dbt_build"]["libraries"]]
    assert any(package.startswith("dbt-databricks") for package in packages)


def test_every_task_retries_and_has_a_timeout(tasks: dict[str, dict[str, Any]]) -> None:
    for key, task in tasks.items():
        assert task["max_retries"] >= 1, key
        assert task["min_retry_interval_millis"] >= 60_000, key
        assert 0 < task["timeout_seconds"] <= 4 * 3600, key


def test_the_job_runs_daily_one_run_at_a_time(job: dict[str, Any]) -> None:
    schedule = job["schedule"]
    fields = schedule["quartz_cron_expression"].split()
    # Quartz: seconds minutes hours day-of-month month day-of-week [year]; exactly one of the day fields is `?`
    assert len(fields) in (6, 7)
    assert [fields[3], fields[5]].count("?") == 1
    assert all(re.fullmatch(r"[0-9*?/,\-LW#A-Z]+", field) for field in fields)
    assert schedule["timezone_id"] == "UTC"
    assert schedule["pause_status"] == "UNPAUSED"
    # one writer per lake
    assert job["max_concurrent_runs"] == 1


def test_both_tasks_share_one_job_cluster_with_the_lake_and_warehouse(job: dict[str, Any]) -> None:
    (cluster,) = job["job_clusters"]
    for task in job["tasks"]:
        assert task["job_cluster_key"] == cluster["job_cluster_key"]
    env = cluster["new_cluster"]["spark_env_vars"]
    assert env["LAKE_URI"] == "${var.lake_uri}"
    for name in ("DATABRICKS_HTTP_PATH", "DATABRICKS_CATALOG", "DATABRICKS_SCHEMA"):
        assert name in env
    # secrets only as secret-scope references
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        assert re.fullmatch(r"\{\{secrets/\$\{var\.secret_scope\}/\w+\}\}", env[name])


def test_every_variable_used_is_declared(bundle: dict[str, Any], resource_files: list[Path]) -> None:
    text = BUNDLE.read_text(encoding="utf-8") + "".join(path.read_text(encoding="utf-8") for path in resource_files)
    used = set(re.findall(r"\$\{var\.(\w+)\}", text))
    declared = set(bundle["variables"])
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    # what a deployment must pass (--var or BUNDLE_VAR_<name>): the workspace's own values, nothing else
    required = {
        name
        for name, spec in bundle["variables"].items()
        if "default" not in spec and not all(name in t.get("variables", {}) for t in bundle["targets"].values())
    }
    assert required == {"warehouse_id", "notification_email"}


def test_the_job_matches_the_databricks_bundles_schema(job: dict[str, Any]) -> None:
    """Every key is one Databricks knows (the `databricks-bundles` package's job model rejects unknown fields)."""
    jobs = pytest.importorskip("databricks.bundles.jobs")
    parsed = jobs.Job.from_dict(job)
    assert [task.task_key for task in parsed.tasks] == ["ingestion", "dbt_build"]
