"""A capture in the real dataset's format, course products with text ids included, builds every layer.

The CSV extracts are the Kaggle reader's (shaped like the real dataset): a product line whose IdProduto is
`carreira` matches no product of the catalogue; Silver keeps it with its text id and Gold counts it under the
category `unknown`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from test_reader_kaggle import CSV_FILES

pytestmark = pytest.mark.dbt

ROOT = Path(__file__).resolve().parents[2]
DBT = str(Path(sys.executable).parent / "dbt")


def test_text_product_ids_capture_and_count_in_gold(tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    for name, text in CSV_FILES.items():
        (snapshots / name).write_text(text, encoding="utf-8")
    lake, database = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    env = {**os.environ, "LAKE_URI": str(lake), "DUCKDB_PATH": str(database)}
    env.pop("DBT_PROFILES_DIR", None)
    command = [sys.executable, "-m", "ingestion", "run", "--source", "loyalty", "--from", "csv"]
    captured = subprocess.run(
        [*command, "--path", str(snapshots), "--lake", str(lake)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert captured.returncode == 0, captured.stderr[-3000:]
    paths = ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    built = subprocess.run(
        [DBT, "build", "--target", "dev", *paths, "--select", "source:loyalty+", "tag:lake_state"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-5000:]
    with duckdb.connect(str(database), read_only=True) as con:
        lines = con.execute(
            "select product_id from silver.silver_loyalty__transaction_products order by product_id"
        ).fetchall()
        assert lines == [("1",), ("5",), ("carreira",)]
        unknown = con.execute(
            """
            select transaction_date, transactions, points_spent from gold.gold_points_daily_cube
            where grouping_level = 'day_category' and product_category = 'unknown'
            """
        ).fetchall()
        assert [(str(day), count) for day, count, _ in unknown] == [("2025-01-16", 1)]
        categories = con.execute(
            "select count(distinct product_category) from gold.gold_points_daily_cube "
            "where product_category is not null"
        ).fetchone()
        assert categories == (3,)  # chat, present and unknown
