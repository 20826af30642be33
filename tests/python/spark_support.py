"""Local Spark with Delta Lake for tests, configured by the `spark` dbt target: one source of truth.

dbt-spark's `method: session` starts its session as `SparkSession.builder.enableHiveSupport()` plus one
`.config(key, value)` per entry of the target's `server_side_parameters`, after its credentials class has added
what it forces. `start_spark` does the same with the same entries, read from `profiles/profiles.yml` through
dbt's own renderer and credentials class, so a test passing here exercises the configuration dbt runs with.
Only folders move: a test session gets its own warehouse and Derby metastore (Derby admits one process, and a
test must not touch a developer's `warehouse/spark/`), through the profile's SPARK_WAREHOUSE_DIR variable.

Use the fixtures with `pytest_plugins = ["spark_support"]` in a test module (which may also import its helpers
first: PYTEST_DONT_REWRITE keeps pytest from warning that it cannot rewrite this module's asserts, it has none).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from dbt.adapters.spark.connections import SparkCredentials
from dbt.config.profile import Profile, read_profile
from dbt.config.renderer import ProfileRenderer
from dbt_common.context import set_invocation_context
from pyspark.sql import SparkSession

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIR = REPO_ROOT / "profiles"
PROFILE_NAME = "lago_mago"
SPARK_TARGET = "spark"
JARS_SCRIPT = REPO_ROOT / "scripts" / "spark_jars.sh"

CLASS_PATH = "spark.driver.extraClassPath"
JAVA_OPTIONS = "spark.driver.extraJavaOptions"
LOG4J_OPTION = "-Dlog4j2.configurationFile="
# The profile keeps tables, metastore and derby.log under this folder (default warehouse/spark).
WAREHOUSE_ENV = "SPARK_WAREHOUSE_DIR"
S3A_PREFIX = "spark.hadoop.fs.s3a."


class SparkSetupError(RuntimeError):
    """Spark's jars could not be fetched, or the profile no longer has the shape these helpers expect."""


def render_target(
    target: str, env: Mapping[str, str] | None = None, profiles_dir: Path = PROFILES_DIR, profile: str = PROFILE_NAME
) -> dict[str, Any]:
    """A target of `profiles/profiles.yml` (or of `profile` in another folder's) as dbt renders it, with `env_var()`
    reading `env` (default: os.environ)."""
    set_invocation_context(dict(os.environ if env is None else env))
    raw_profiles = read_profile(str(profiles_dir))
    _, rendered = Profile.render_profile(raw_profiles[profile], profile, target, ProfileRenderer({}))
    return dict(rendered)


def profile_spark_parameters(
    env: Mapping[str, str] | None = None, profiles_dir: Path = PROFILES_DIR, profile: str = PROFILE_NAME
) -> dict[str, str]:
    """The `spark` target's session parameters exactly as dbt-spark applies them (including what it forces)."""
    rendered = render_target(SPARK_TARGET, env, profiles_dir, profile)
    fields = {key: value for key, value in rendered.items() if key not in ("type", "threads")}
    credentials = SparkCredentials.from_dict(SparkCredentials.translate_aliases(fields))
    return dict(credentials.server_side_parameters)


def isolated_parameters(workdir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The profile's parameters with the warehouse in `workdir` and the jar folder anchored at the repo root."""
    parameters = profile_spark_parameters({**(os.environ if env is None else env), WAREHOUSE_ENV: str(workdir)})
    return anchored(parameters, REPO_ROOT)


def anchored(parameters: Mapping[str, str], folder: Path) -> dict[str, str]:
    """`parameters` with the files a profile names relative to its project's folder (the jar folder, the log4j2
    file) made absolute against `folder`, without `..`: two spellings of one file read the same."""

    def absolute(path: str) -> str:
        return os.path.normpath(folder / path)

    options = (
        LOG4J_OPTION + absolute(option.removeprefix(LOG4J_OPTION)) if option.startswith(LOG4J_OPTION) else option
        for option in parameters[JAVA_OPTIONS].split()
    )
    return {**parameters, CLASS_PATH: absolute(parameters[CLASS_PATH]), JAVA_OPTIONS: " ".join(options)}


def jars_dir(parameters: Mapping[str, str]) -> Path:
    """The folder behind the class-path wildcard `<folder>/*`."""
    class_path = parameters[CLASS_PATH]
    if not class_path.endswith("/*"):
        raise SparkSetupError(f"{CLASS_PATH} should be a `<folder>/*` wildcard, found {class_path!r}")
    folder = Path(class_path[:-2])
    return folder if folder.is_absolute() else REPO_ROOT / folder


def ensure_spark_jars(folder: Path, timeout: float = 1800) -> None:
    """Run the documented install step with `--s3` (the suite reads S3 lakes too); at once when the jars are there."""
    env = {**os.environ, "LAGO_SPARK_JARS_DIR": str(folder)}
    folder.mkdir(parents=True, exist_ok=True)
    # parallel test workers fetch one set of jars: the first fetches, the others wait for it and find them there
    with (folder / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            result = subprocess.run(
                ["bash", str(JARS_SCRIPT), "--s3"],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise SparkSetupError(f"{JARS_SCRIPT.name} did not finish within {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise SparkSetupError(f"{JARS_SCRIPT.name} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def start_spark(parameters: Mapping[str, str]) -> SparkSession:
    """A session built the way dbt-spark's session method builds it."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in parameters.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def apply_s3a_settings(spark: SparkSession, parameters: Mapping[str, str]) -> None:
    """Give a running session the profile's s3a settings (e.g. rendered with a test server's AWS_* variables).

    Hadoop reads them when it first opens a bucket, so buckets opened afterwards use the new values.
    """
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in parameters.items():
        if key.startswith(S3A_PREFIX):
            hadoop_conf.set(key.removeprefix("spark.hadoop."), value)


def s3a_uri(uri: str) -> str:
    """`s3://bucket/prefix` (the lake's spelling) as Hadoop's `s3a://bucket/prefix`."""
    return "s3a://" + uri.removeprefix("s3://") if uri.startswith("s3://") else uri


@pytest.fixture(scope="session")
def spark_parameters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The `spark` target's parameters for this test session; fetches Spark's jars on a fresh machine."""
    parameters = isolated_parameters(tmp_path_factory.mktemp("spark"))
    ensure_spark_jars(jars_dir(parameters))
    return parameters


@pytest.fixture(scope="session")
def spark(spark_parameters: dict[str, str]) -> Iterator[SparkSession]:
    """One local Spark session with Delta Lake for the whole test session (a JVM starts in about 5 s)."""
    session = start_spark(spark_parameters)
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
