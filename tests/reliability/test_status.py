"""`status`: held and interrupted captures are shown, `--json` is one documented document, a reader that stops
reading ends it quietly (exit 0), and `--version` names the package's version."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from reliability_support import CLIENTES_HEADER, History, Recorder, csv_args, ingest
from support.cli import command, environment, run_cli

from ingestion.config import FAILPOINT_ENV

ROWS = 250


def snapshot_folder(folder: Path, history: History, clientes: int) -> Path:
    """`clientes` customers (enough for the circuit breaker to judge) and the history's first produtos."""
    folder.mkdir(parents=True)
    lines = [f"c{k:04d};1;0;1;;0;{k};2024-01-01 10:00:00.000;2024-02-01 10:00:00.000" for k in range(clientes)]
    (folder / "clientes.csv").write_text("\n".join([CLIENTES_HEADER, *lines]) + "\n", encoding="utf-8")
    shutil.copy(history.folders[0] / "produtos.csv", folder / "produtos.csv")
    return folder


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, history: History) -> Path:
    """clientes: a full load of 250 rows, then a capture deleting 150 of them, held; produtos: a full load, then
    a capture interrupted after it was decided (pending)."""
    base = tmp_path_factory.mktemp("status")
    lake = base / "lake"
    ingest(lake, *csv_args(snapshot_folder(base / "v0", history, ROWS)), check=True)
    held = ingest(lake, *csv_args(snapshot_folder(base / "v1", history, 100), tables="clientes"))
    assert held.returncode == 6, held.stderr
    crashed = ingest(lake, *csv_args(history.folders[1], tables="produtos"), env={FAILPOINT_ENV: "after-pending"})
    assert crashed.returncode != 0
    assert (lake / "_ingestion/loyalty/produtos/pending.json").is_file()
    return lake


def status(lake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("status", "--lake", str(lake), "--source", "loyalty", *args, timeout=60, check=True)


def test_status_shows_held_and_pending_captures(lake: Path, report: Recorder) -> None:
    lines = status(lake).stdout.splitlines()
    held = [line for line in lines if line.strip().startswith("held:")]
    pending = [line for line in lines if line.strip().startswith("pending:")]
    report.record(
        "status with a held and an interrupted capture", runs=3, note=f"{len(held)} held, {len(pending)} pending"
    )
    assert len(held) == 1 and len(pending) == 1, lines
    # each under its table's line
    assert lines[lines.index(held[0]) - 1].startswith("clientes "), lines
    assert lines[lines.index(pending[0]) - 1].startswith("produtos "), lines
    assert "I=0 U=0 D=150" in held[0] and "100 rows" in held[0] and "60% deleted" in held[0], held[0]
    assert "python -m ingestion approve loyalty.clientes" in held[0]
    assert "next run completes it" in pending[0]


def test_status_json_is_one_object_per_table(lake: Path, report: Recorder) -> None:
    document: dict[str, Any] = json.loads(status(lake, "--json").stdout)
    assert document["format"] == 1 and document["lake"] == str(lake)
    tables = {(t["source"], t["table"]): t for t in document["tables"]}
    report.record("status --json", runs=1, note=f"{len(tables)} table objects")
    assert set(tables) == {
        ("loyalty", "clientes"),
        ("loyalty", "produtos"),
        ("loyalty", "transacoes"),
        ("loyalty", "transacao_produto"),
    }
    clientes = tables[("loyalty", "clientes")]
    assert (clientes["captures"], clientes["files"], clientes["rows"], clientes["last_sequence"]) == (1, 1, ROWS, ROWS)
    last = clientes["last_capture"]
    assert (last["kind"], last["inserts"], last["updates"], last["deletes"]) == ("full-load", ROWS, 0, 0)
    assert last["sequences"] == [1, ROWS] and last["file"].startswith("raw/loyalty/full-load/clientes/")
    held = clientes["held"]
    assert (held["kind"], held["inserts"], held["updates"], held["deletes"], held["rows"]) == ("cdc", 0, 0, 150, 100)
    assert held["sequences"] == [ROWS + 1, ROWS + 150] and "60% deleted" in held["reason"]
    (held_file,) = (lake / "_ingestion/loyalty/clientes/held").glob("*.json")
    assert held_file.name == f"{held['capture_id']}.json"
    assert held["captured_at"].endswith("+00:00") and clientes["pending"] is None
    produtos = tables[("loyalty", "produtos")]
    assert produtos["held"] is None and produtos["pending"]["kind"] == "cdc"
    pending = json.loads((lake / "_ingestion/loyalty/produtos/pending.json").read_text())
    assert produtos["pending"]["capture_id"] == pending["capture_id"]
    never = tables[("loyalty", "transacoes")]
    assert never["last_capture"] is None and never["captures"] == 0 and never["rows"] is None


@pytest.mark.parametrize("form", ["table", "json"])
def test_status_into_a_closed_pipe_exits_quietly(form: str, lake: Path, report: Recorder) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before status writes a byte, as after `status | head -0`
    try:
        args = ["status", "--lake", str(lake), "--source", "loyalty", *(["--json"] if form == "json" else [])]
        result = subprocess.run(
            command(*args), env=environment(), stdout=write, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write)
    report.record(f"status ({form}) into a closed pipe", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_version_names_the_package_version(report: Recorder) -> None:
    result = run_cli("--version", timeout=60)
    report.record("--version", runs=1, note=f"exit {result.returncode}: {result.stdout.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["python", "-m", "ingestion", importlib.metadata.version("lago-mago")]
