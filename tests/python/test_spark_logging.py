"""Spark is quiet by default (issue 13): the `spark` target's log4j2 file keeps expected misses off the console.

A Spark session is started the way dbt-spark starts it, from the profile (spark_support.py), in a child process
whose stderr is kept. It does what makes Spark's default logging print warnings and Java stack traces in a dbt
build: it builds a table model, then rebuilds it with one more column. With the profile's logging the console
holds no stack trace and none of those warnings; with Spark's default logging (the same script, the file
swapped through SPARK_LOG4J_CONFIG) the same steps print them, so the check is not vacuous.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pyspark
import pytest
from spark_support import REPO_ROOT, ensure_spark_jars, isolated_parameters, jars_dir

pytestmark = pytest.mark.slow

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from spark_support import isolated_parameters, start_spark
from pathlib import Path

spark = start_spark(isolated_parameters(Path({workdir!r})))
spark.sql("create schema if not exists quiet")
# a table model built, then rebuilt with one more column (dbt-spark's `create or replace table ... as select`)
spark.sql("create or replace table quiet.t using delta as select 1 as id")
spark.sql("create or replace table quiet.t using delta as select 1 as id, 'a' as name")
spark.sql("select * from quiet.t").collect()
spark.stop()
print("done")
"""

STACK_FRAME = re.compile(r"^\s+at [\w$.]+\(", re.MULTILINE)
EXPECTED_NOISE = ("Hive SerDe", "Hive compatible way", "Failed to alter table")


def run_session(workdir: Path, env: dict[str, str]) -> str:
    script = SCRIPT.format(tests=str(Path(__file__).parent), workdir=str(workdir))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-5000:]
    return result.stderr


def spark_default_log4j(folder: Path) -> Path:
    """Spark's own default configuration (log4j2-defaults.properties in its jars), as a file."""
    jar = next((Path(pyspark.__file__).parent / "jars").glob("spark-common-utils-java_*.jar"))
    with zipfile.ZipFile(jar) as archive:
        text = archive.read("org/apache/spark/log4j2-defaults.properties").decode()
    path = folder / "log4j2-defaults.properties"
    path.write_text(text)
    return path


def test_the_profile_keeps_expected_misses_off_the_console(tmp_path: Path) -> None:
    ensure_spark_jars(jars_dir(isolated_parameters(tmp_path)))
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("SPARK_LOG4J_CONFIG", None)

    quiet = run_session(tmp_path / "quiet", env)
    assert not STACK_FRAME.search(quiet), quiet[-5000:]
    assert not [noise for noise in EXPECTED_NOISE if noise in quiet], quiet[-5000:]
    assert not re.search(r" (WARN|ERROR) ", quiet), quiet[-5000:]

    default = run_session(tmp_path / "default", {**env, "SPARK_LOG4J_CONFIG": str(spark_default_log4j(tmp_path))})
    assert STACK_FRAME.search(default), "Spark's default logging printed no stack trace: the check above proves nothing"
    assert [noise for noise in EXPECTED_NOISE if noise in default], default[-3000:]
