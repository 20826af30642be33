"""Local Spark configured by the `spark` dbt target: Delta Lake MERGE and Change Data Feed, and s3a:// reads."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from s3server import SeaweedFS
from spark_support import (
    REPO_ROOT,
    S3A_PREFIX,
    anchored,
    apply_s3a_settings,
    profile_spark_parameters,
    s3a_uri,
)

pytestmark = pytest.mark.spark

pytest_plugins = ["spark_support"]

PACKAGE_TESTS = REPO_ROOT / "packages" / "lago_cdc" / "integration_tests"


def test_the_profile_renders_without_any_environment() -> None:
    parameters = profile_spark_parameters(env={})
    assert parameters["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert parameters["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert parameters["spark.hadoop.fs.s3a.endpoint"] == ""


def test_the_cdc_package_tests_start_spark_as_the_project_does() -> None:
    """The CDC package's integration project repeats the `spark` target's session settings (a dbt project reads only
    its own profiles.yml), its paths relative to its own folder: the same settings, the same files. Its lakes are
    local folders, so it has no s3a settings."""
    project = {key: value for key, value in profile_spark_parameters(env={}).items() if not key.startswith(S3A_PREFIX)}
    package = profile_spark_parameters(env={}, profiles_dir=PACKAGE_TESTS, profile="lago_cdc_integration_tests")
    assert anchored(package, PACKAGE_TESTS.resolve()) == anchored(project, REPO_ROOT)


def test_the_session_runs_with_the_profile_settings(spark: SparkSession, spark_parameters: dict[str, str]) -> None:
    for key in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog", "spark.sql.session.timeZone"):
        assert spark.conf.get(key) == spark_parameters[key]
    assert spark.conf.get("spark.sql.shuffle.partitions") == spark_parameters["spark.sql.shuffle.partitions"]
    assert spark.sparkContext.master == spark_parameters["spark.master"]
    # projections and filters interpreted, not compiled per task (a fifth or more of an incremental build's CPU)
    assert spark.conf.get("spark.sql.codegen.factoryMode") == spark_parameters["spark.sql.codegen.factoryMode"]
    assert spark_parameters["spark.sql.codegen.factoryMode"] == "NO_CODEGEN"
    # and planned once, not again at each stage (adaptive execution: a tenth of an incremental build's CPU)
    assert spark.conf.get("spark.sql.adaptive.enabled") == "false" == spark_parameters["spark.sql.adaptive.enabled"]
    # the test session's warehouse is its own, never the developer's warehouse/spark/
    assert "warehouse/spark" not in spark.conf.get("spark.sql.warehouse.dir", "")
    # the JVM flags of the profile reached the JVM: the JIT's quick tier alone, with a code cache a whole build's
    # compiled code fits in (at that tier's 48 MB default the JIT stops within a minute and the rest runs interpreted)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    diagnostics = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    assert diagnostics.getVMOption("TieredStopAtLevel").getValue() == "1"
    assert int(diagnostics.getVMOption("ReservedCodeCacheSize").getValue()) >= 256 * 1024 * 1024


def test_delta_merge_applies_cdc_batches_and_records_a_change_feed(spark: SparkSession) -> None:
    spark.sql("create database if not exists spark_delta_test")
    spark.sql(
        """
        create table spark_delta_test.customers (customer_id int, name string, points int)
        using delta
        tblproperties (delta.enableChangeDataFeed = true)
        """
    )
    spark.sql("insert into spark_delta_test.customers values (1, 'ana', 10), (2, 'bia', 20), (3, 'caio', 30)")

    # One CDC batch as Bronze applies it: deletes remove, updates replace, a delete of an unknown key is a no-op.
    spark.sql(
        """
        merge into spark_delta_test.customers as target
        using (
            select * from values
                ('U', 1, 'ana', 15),
                ('D', 2, 'bia', 20),
                ('I', 4, 'duda', 40),
                ('D', 9, 'nobody', 0)
            as batch(_cdc_operation, customer_id, name, points)
        ) as source
        on target.customer_id = source.customer_id
        when matched and source._cdc_operation = 'D' then delete
        when matched then update set name = source.name, points = source.points
        when not matched and source._cdc_operation <> 'D' then
            insert (customer_id, name, points) values (source.customer_id, source.name, source.points)
        """
    )

    rows = spark.sql("select * from spark_delta_test.customers order by customer_id").collect()
    assert [tuple(row) for row in rows] == [(1, "ana", 15), (3, "caio", 30), (4, "duda", 40)]

    detail = spark.sql("describe detail spark_delta_test.customers").collect()[0]
    assert detail["format"] == "delta"
    assert detail["properties"]["delta.enableChangeDataFeed"] == "true"

    changes = spark.sql(
        """
        select _change_type, customer_id
        from table_changes('spark_delta_test.customers', 2)
        order by customer_id, _change_type
        """
    ).collect()
    assert [tuple(row) for row in changes] == [
        ("update_postimage", 1),
        ("update_preimage", 1),
        ("delete", 2),
        ("insert", 4),
    ]


@pytest.mark.s3
def test_spark_reads_lake_parquet_from_seaweedfs_over_s3a(
    spark: SparkSession, seaweedfs: SeaweedFS, s3_lake_env: str, tmp_path: Path
) -> None:
    # The lake writes an explicit Arrow schema: a column whose values are all null still has its type.
    schema = pa.schema([("customer_id", pa.int64()), ("name", pa.string()), ("note", pa.string())])
    bucket, prefix = s3_lake_env.removeprefix("s3://").split("/", 1)
    client = seaweedfs.client()
    for number, ids in enumerate(([1, 2], [3])):
        local = tmp_path / f"part{number}.parquet"
        table = pa.table({"customer_id": ids, "name": [f"c{i}" for i in ids], "note": [None] * len(ids)}, schema)
        pq.write_table(table, local)
        key = f"{prefix}/raw/loyalty/cdc/clientes/clientes_2025010{number}_000000_000000.parquet"
        client.upload_file(str(local), bucket, key)

    # The profile rendered with the server's AWS_* variables, as `dbt build --target spark` would see them.
    apply_s3a_settings(spark, profile_spark_parameters())

    files = s3a_uri(s3_lake_env) + "/raw/loyalty/cdc/clientes/clientes_*.parquet"
    frame = spark.read.parquet(files)
    assert dict(frame.dtypes) == {"customer_id": "bigint", "name": "string", "note": "string"}
    assert sorted(tuple(row) for row in frame.collect()) == [(1, "c1", None), (2, "c2", None), (3, "c3", None)]
