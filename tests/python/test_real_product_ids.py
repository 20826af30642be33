"""A capture in the real dataset's format, course products with text ids included, builds every layer.

The CSV extracts are the Kaggle reader's (shaped like the real dataset): a product line whose IdProduto is
`carreira` matches no product of the catalogue; Silver keeps it with its text id and Gold counts it under the
category `unknown`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import csv_args, ingest
from support.dbt import Dbt
from test_reader_kaggle import CSV_FILES

pytestmark = pytest.mark.dbt


def test_text_product_ids_capture_and_count_in_gold(tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    for name, text in CSV_FILES.items():
        (snapshots / name).write_text(text, encoding="utf-8")
    site = Dbt.at(tmp_path)
    captured = ingest(site.lake, "--source", "loyalty", *csv_args(snapshots))
    assert captured.returncode == 0, captured.stderr[-3000:]
    built = site.build("--select", "source:loyalty+")
    assert built.returncode == 0, built.stdout[-5000:]
    with site.connect() as con:
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
