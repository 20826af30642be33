"""Compare every table dbt built on DuckDB with the same table built on Spark; print the differences as JSON.

    python tests/python/cross_engine.py MANIFEST DUCKDB_FILE SPARK_WAREHOUSE_DIR [QUERIES]

QUERIES, a JSON object of named SQL statements written in the SQL both engines read, is run on each warehouse; its
rows per engine are in the report's `queries`, so a test can count something on both in this one Spark session.

Run as its own process: a Python process holds one Spark session, and the test session's own Spark fixture may
already have one with another warehouse. Values are normalised where the engines legitimately differ in
representation only: time zones (both warehouses run in UTC), decimals against doubles, float rounding. Columns
that record when or from which path a row was loaded differ by nature and are left out.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
from pathlib import Path
from typing import Any

import duckdb

# run as a script, this file's folder is on sys.path
from spark_support import isolated_parameters, start_spark

# load and publication times
SKIPPED_COLUMNS: tuple[str, ...] = ()
SKIPPED_SUFFIXES = ("loaded_at", "merged_at", "published_at")
# a dbt snapshot's versions are stamped with the time of the build that took them (the history models' are the
# changes' capture times, and are compared)
SNAPSHOT_BUILD_TIMES = ("dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to")


def normalise(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | float):
        return round(float(value), 6)
    if isinstance(value, str) and value in ("True", "False"):
        return value == "True"  # dbt-duckdb stores dbt_is_deleted as text
    if isinstance(value, str) and value.startswith("file:/"):
        return value.removeprefix("file:")  # lake paths: Spark names local files by URI
    return value


def compared_columns(columns: list[str], snapshot: bool = False) -> list[str]:
    skipped = SKIPPED_COLUMNS + (SNAPSHOT_BUILD_TIMES if snapshot else ())
    return [c for c in columns if c not in skipped and not c.endswith(SKIPPED_SUFFIXES)]


def main(manifest_path: str, duckdb_file: str, warehouse: str, queries: str = "{}") -> dict[str, Any]:
    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    relations = sorted(
        (node["schema"], node["alias"], node["resource_type"] == "snapshot")
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "snapshot") and node["config"]["materialized"] != "ephemeral"
    )
    duck = duckdb.connect(duckdb_file, read_only=True)
    spark = start_spark(isolated_parameters(Path(warehouse)))
    spark.sparkContext.setLogLevel("ERROR")
    report: dict[str, Any] = {}
    for schema, name, snapshot in relations:
        duck_columns = [row[0] for row in duck.execute(f'describe "{schema}"."{name}"').fetchall()]
        spark_columns = [field.name for field in spark.table(f"{schema}.{name}").schema.fields]
        columns = [c for c in compared_columns(duck_columns, snapshot) if c in spark_columns]
        duck_select = ", ".join(f'"{c}"' for c in columns)
        duck_rows = sorted(
            json.dumps([normalise(v) for v in row], default=str)
            for row in duck.execute(f'select {duck_select} from "{schema}"."{name}"').fetchall()
        )
        spark_select = ", ".join(f"`{c}`" for c in columns)
        spark_rows = sorted(
            json.dumps([normalise(v) for v in row], default=str)
            for row in spark.sql(f"select {spark_select} from {schema}.{name}").collect()
        )
        only_duckdb = sorted(set(duck_rows) - set(spark_rows))
        only_spark = sorted(set(spark_rows) - set(duck_rows))
        report[f"{schema}.{name}"] = {
            "rows": [len(duck_rows), len(spark_rows)],
            "columns_on_one_engine_only": sorted(
                set(compared_columns(duck_columns, snapshot)) ^ set(compared_columns(spark_columns, snapshot))
            ),
            "only_duckdb": only_duckdb[:5],
            "only_spark": only_spark[:5],
            "equal": duck_rows == spark_rows,
        }
    answers = {
        name: {
            "duckdb": [[normalise(v) for v in row] for row in duck.execute(statement).fetchall()],
            "spark": [[normalise(v) for v in row] for row in spark.sql(statement).collect()],
        }
        for name, statement in json.loads(queries).items()
    }
    spark.stop()
    return {"tables": report, "queries": answers}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5]), default=str))
