"""A source file replaced or rewritten while it is being captured: nothing of it may be lost.

The capture runs in this process (the CLI's own `main`), so the test can land the new export at an exact moment:
right after the diff, before the capture decides what it stores as the table's next snapshot (where a capture that
read the file a second time stored the new version while publishing the changes of the old one).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import LakeView, LocalView, Recorder, change_rows, csv_args, ingest, lake_kind

from ingestion import cdc
from ingestion.capture import SOURCE_READS
from ingestion.cli import main

HEADER = "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto"
ROWS = 200


def _export(path: Path, version: int) -> None:
    """Every product renamed in each version, each version the same size (a rewrite in place shows no new size)."""
    lines = [HEADER, *(f"{key};Produto v{version} {key:04d};;chat" for key in range(1, ROWS + 1))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _replace(path: Path, version: int, how: str) -> None:
    if how == "renamed into place":
        staging = path.with_name(path.name + ".part")
        _export(staging, version)
        os.replace(staging, path)
    else:
        _export(path, version)


def _lake_state(view: LakeView) -> dict[int, str]:
    """The table the change log describes: each key's latest change, deletes removed."""
    latest: dict[int, tuple[int, str, str]] = {}
    for row in change_rows(view):
        _, table, operation, sequence, key, name, *_ = row
        assert table == "produtos"
        if key not in latest or sequence > latest[key][0]:
            latest[key] = (sequence, operation, name)
    return {key: name for key, (_, operation, name) in latest.items() if operation != "D"}


def _capture(lake: str, folder: Path) -> int:
    return main(["run", "--lake", lake, *csv_args(folder, "produtos")])


@pytest.mark.parametrize("how", ["renamed into place", "rewritten in place"])
def test_a_csv_replaced_during_a_compacting_capture_loses_no_row(
    how: str, any_lake: str, lake_view: LakeView, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, report: Recorder
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    path = folder / "produtos.csv"
    _export(path, 1)
    assert _capture(any_lake, folder) == 0
    # every row changes: the capture writes a full snapshot again (see capture.COMPACT_SHARE)
    _export(path, 2)
    change_rows_before = change_rows(lake_view)
    real_diff = cdc.diff
    replaced: list[int] = []

    def diff_then_new_export(*args: Any, **kwargs: Any) -> cdc.DiffResult:
        result = real_diff(*args, **kwargs)
        if not replaced:
            _replace(path, 3, how)
            replaced.append(3)
        return result

    monkeypatch.setattr(cdc, "diff", diff_then_new_export)
    raced = _capture(any_lake, folder)
    monkeypatch.setattr(cdc, "diff", real_diff)
    assert replaced, "the new export never landed"
    # the capture read the new export again, whole, and published it
    assert raced == 0
    published = change_rows(lake_view)
    assert published != change_rows_before
    # it stored that export as the next snapshot: the next capture finds nothing to publish
    assert _capture(any_lake, folder) == 0
    assert change_rows(lake_view) == published
    state = _lake_state(lake_view)
    expected = {key: f"Produto v3 {key:04d}" for key in range(1, ROWS + 1)}
    lost = sum(1 for key, name in expected.items() if state.get(key) != name)
    report.record(
        f"CSV {how} between the diff and the stored snapshot ({lake_kind(any_lake)})",
        runs=3,
        expected=ROWS,
        lost=lost,
        note=f"racing run exited {raced} (read again), then a run that finds it unchanged",
    )
    assert len(state) == ROWS
    assert state == expected


def _source_changed(capture: Callable[[], int], caplog: pytest.LogCaptureFixture) -> str:
    caplog.clear()
    caplog.set_level("INFO")
    assert capture() == 3
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    return errors[0]


def test_a_refused_capture_names_the_file_and_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, report: Recorder
) -> None:
    """A file that keeps changing while it is read (here: a row appended after each read of a full load) is read
    again whole twice, then refused; the message names the table, the file and the sizes."""
    folder = tmp_path / "export"
    folder.mkdir()
    path = folder / "produtos.csv"
    _export(path, 1)
    lake = str(tmp_path / "lake")
    real_full_load = cdc.full_load
    appended: list[int] = []

    def full_load_then_append(*args: Any, **kwargs: Any) -> cdc.DiffResult:
        result = real_full_load(*args, **kwargs)
        appended.append(ROWS + len(appended) + 1)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{appended[-1]};Produto novo;;chat\n")
        return result

    monkeypatch.setattr(cdc, "full_load", full_load_then_append)
    message = _source_changed(lambda: _capture(lake, folder), caplog)
    warnings = [r.getMessage() for r in caplog.records if "reading it again" in r.getMessage()]
    assert len(warnings) == SOURCE_READS - 1, warnings
    report.record("CSV appended to during a full load", runs=1, note=message[:90])
    assert "table loyalty.produtos, file produtos.csv: the file changed while it was being captured" in message
    size = path.stat().st_size
    assert f"-> {size} bytes" in message
    assert not (Path(lake) / "raw").exists()
    monkeypatch.setattr(cdc, "full_load", real_full_load)
    assert _capture(lake, folder) == 0
    state = json.loads((Path(lake) / "_ingestion/loyalty/produtos/state.json").read_text())
    assert state["captures"][-1]["inserts"] == ROWS + SOURCE_READS


def test_captures_racing_a_stream_of_new_exports_lose_no_row(tmp_path: Path, report: Recorder) -> None:
    """The plain CLI, while another thread keeps renaming new exports into place (every row changed each time,
    so every capture compacts): each run publishes one whole version or refuses (exit 3), and a last run after the
    exports stop leaves the lake holding the last export, row for row. Which runs meet a replacement is up to the
    timing; the outcome may not depend on it."""
    folder = tmp_path / "export"
    folder.mkdir()
    path = folder / "produtos.csv"
    lake = tmp_path / "lake"
    _export(path, 1)
    assert ingest(lake, *csv_args(folder, "produtos")).returncode == 0
    stop = threading.Event()
    exported = [1]
    pause = random.Random(17)

    def keep_exporting() -> None:
        while not stop.is_set():
            exported.append(exported[-1] + 1)
            _replace(path, exported[-1], "renamed into place")
            time.sleep(pause.uniform(0.2, 2.5))  # some runs meet a new export, some do not

    racer = threading.Thread(target=keep_exporting, daemon=True)
    racer.start()
    try:
        codes = [ingest(lake, *csv_args(folder, "produtos")) for _ in range(6)]
    finally:
        stop.set()
        racer.join(timeout=30)
    assert all(run.returncode in (0, 3) for run in codes), [run.stderr[-2000:] for run in codes]
    refused = [run for run in codes if run.returncode == 3]
    assert all("the file changed while it was being captured" in run.stderr for run in refused)
    final = ingest(lake, *csv_args(folder, "produtos"))
    assert final.returncode == 0, final.stderr
    again = ingest(lake, *csv_args(folder, "produtos"))
    assert again.returncode == 0 and "unchanged" in again.stderr, again.stderr
    state = _lake_state(LocalView(lake))
    expected = {key: f"Produto v{exported[-1]} {key:04d}" for key in range(1, ROWS + 1)}
    lost = sum(1 for key, name in expected.items() if state.get(key) != name)
    report.record(
        "CSV exports renamed into place every 0.2-2.5 s during 6 CLI captures",
        runs=len(codes) + 3,
        expected=ROWS,
        lost=lost,
        note=f"{len(refused)} run(s) refused (exit 3), {len(exported)} exports",
    )
    assert state == expected
