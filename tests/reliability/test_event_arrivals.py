"""Hotmart `--arrival-column`: an event read in a later run whose column value lies before arrivals already
published is clamped to just after the latest published arrival of the source, so answers already given (a
day's GMV as known on that day) never change."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
from reliability_support import ROOT, Recorder, ingest

SAMPLE = ROOT / "seeds" / "hotmart"
TABLES = ("purchase", "product_item", "purchase_extra_info")


def arrivals(lake: Path, table: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for path in sorted((lake / "raw/hotmart/events" / table).glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def test_a_late_event_never_arrives_before_what_the_lake_already_knew(tmp_path: Path, report: Recorder) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    for table in TABLES:
        shutil.copyfile(SAMPLE / f"hotmart_sample__{table}.csv", folder / f"{table}.csv")
    lake = tmp_path / "lake"
    args = ("--source", "hotmart", "--from", "csv", "--path", str(folder), "--arrival-column", "transaction_datetime")
    first = ingest(lake, *args)
    assert first.returncode == 0, first.stderr
    latest = max(r["_ingested_at"] for t in TABLES for r in arrivals(lake, t))
    assert isinstance(latest, datetime)
    earliest = min(r["_ingested_at"] for t in TABLES for r in arrivals(lake, t))
    assert isinstance(earliest, datetime) and earliest < latest
    backdated = (earliest + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    # a correction of a purchase's subsidiary, found in a later export, dated within the first published days
    with (folder / "purchase_extra_info.csv").open("a", encoding="utf-8") as handle:
        handle.write(f"{backdated}|{backdated[:10]}|55|internacional\n")
    second = ingest(lake, *args)
    assert second.returncode == 0, second.stderr
    (new,) = [r for r in arrivals(lake, "purchase_extra_info") if str(r["transaction_datetime"]).startswith(backdated)]
    report.record(
        "Hotmart event whose arrival column lies before published arrivals",
        runs=2,
        expected=1,
        note=f"column {backdated}, stamped {new['_ingested_at']}, latest published {latest}",
    )
    assert new["_ingested_at"] == latest + timedelta(microseconds=1)
    assert "stamped as arriving just after it" in second.stderr
    # the events already published keep their arrival times
    assert min(r["_ingested_at"] for t in TABLES for r in arrivals(lake, t)) == earliest
