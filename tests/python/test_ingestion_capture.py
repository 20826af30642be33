"""Capture runs through the real CLI: layout, CDC across captures, crash-then-rerun, the lake lock.

A test over `any_lake` runs on a local folder and on the S3 server alike.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.cli import csv_args, ingest, run_cli, start_cli, start_ingest

from ingestion.lake import LocalLake, open_lake
from ingestion.lock import LOCK_KEY, LakeLock

HEADER = "idCliente;flEmail;flTwitch;flYouTube;flBlueSky;flInstagram;qtdePontos;DtCriacao;DtAtualizacao"


def clientes_csv(folder: Path, rows: dict[str, tuple[int, str]]) -> Path:
    """Write clientes.csv with the given id -> (points, updated-at suffix); flBlueSky left empty."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [
        f"{key};1;0;1;;0;{points};2024-01-01 10:00:00.000;2024-02-{day} 10:00:00.000"
        for key, (points, day) in sorted(rows.items())
    ]
    (folder / "clientes.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


VERSIONS = [
    {"a": (10, "01"), "b": (20, "01"), "c": (30, "01")},
    {"a": (10, "01"), "b": (25, "02"), "d": (40, "02")},  # b updated, c deleted, d inserted
    {"a": (10, "01"), "b": (25, "02"), "d": (40, "02"), "c": (31, "03")},  # c re-inserted
]


def keys(lake: str | Path, prefix: str) -> list[str]:
    """The keys of a local or S3 lake under `prefix`."""
    return [item.key for item in open_lake(str(lake)).list(prefix)]


def change_set(lake: str | Path, source: str = "loyalty") -> list[tuple[object, ...]]:
    """Every published change row of a local or S3 lake, without the capture time (which differs between two
    runs)."""
    store = open_lake(str(lake))
    rows: list[tuple[object, ...]] = []
    for key in keys(lake, f"raw/{source}/"):
        _, _, kind, table, _ = key.split("/", 4)
        data = store.read_bytes(key)
        assert data is not None, f"{key} was listed but cannot be read"
        for row in pq.read_table(io.BytesIO(data)).to_pylist():
            row.pop("_cdc_timestamp")
            rows.append((kind, table, *row.values()))
    return sorted(rows, key=repr)


def test_first_capture_is_full_load_then_cdc_files_with_iud(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for number, version in enumerate(VERSIONS):
        result = ingest(lake, *csv_args(clientes_csv(tmp_path / f"v{number}", version), "clientes"))
        assert result.returncode == 0, result.stderr
    full = list((lake / "raw/loyalty/full-load/clientes").glob("clientes_*.parquet"))
    changes = sorted((lake / "raw/loyalty/cdc/clientes").glob("clientes_*.parquet"))
    assert len(full) == 1 and len(changes) == 2
    first = {(r["_cdc_operation"], r["idCliente"]) for r in pq.read_table(changes[0]).to_pylist()}
    assert first == {("U", "b"), ("D", "c"), ("I", "d")}
    second = pq.read_table(changes[1]).to_pylist()
    assert [(r["_cdc_operation"], r["idCliente"], r["qtdePontos"]) for r in second] == [("I", "c", 31)]
    sequences = [r["_cdc_sequence"] for p in [*full, *changes] for r in pq.read_table(p).to_pylist()]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


def test_no_change_publishes_nothing_but_records_the_capture(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    folder = clientes_csv(tmp_path / "v", VERSIONS[0])
    assert ingest(lake, *csv_args(folder, "clientes")).returncode == 0
    assert ingest(lake, *csv_args(folder, "clientes")).returncode == 0
    assert not (lake / "raw/loyalty/cdc").exists()
    state = json.loads((lake / "_ingestion/loyalty/clientes/state.json").read_text())
    assert [c["kind"] for c in state["captures"]] == ["full-load", "unchanged"]
    status = run_cli("status", "--lake", str(lake))
    assert status.returncode == 0, status.stderr
    assert "clientes" in status.stdout and "unchanged" in status.stdout


@pytest.mark.parametrize(
    "failpoint", ["after-stage-snapshot", "after-pending", "after-publish", "after-state", "before-cleanup"]
)
def test_crash_at_each_step_then_rerun_equals_a_run_that_never_crashed(tmp_path: Path, failpoint: str) -> None:
    folders = [clientes_csv(tmp_path / f"v{n}", v) for n, v in enumerate(VERSIONS)]
    twin = tmp_path / "twin"
    for folder in folders:
        assert ingest(twin, *csv_args(folder, "clientes")).returncode == 0

    lake = tmp_path / "lake"
    assert ingest(lake, *csv_args(folders[0], "clientes")).returncode == 0
    crashed = ingest(lake, *csv_args(folders[1], "clientes"), env={"LAGO_FAILPOINT": failpoint})
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL
    rerun = ingest(lake, *csv_args(folders[1], "clientes"))
    assert rerun.returncode == 0, rerun.stderr
    assert ingest(lake, *csv_args(folders[2], "clientes")).returncode == 0

    assert change_set(lake) == change_set(twin)
    # dbt's globs only ever see whole Parquet files
    for path in (lake / "raw").rglob("*"):
        if path.is_file():
            assert path.suffix == ".parquet"
            pq.read_metadata(path)


def test_simulator_crash_mid_run_resumes_the_same_day(any_lake: str, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    for _ in range(2):
        assert ingest(twin, "--scale", "200").returncode == 0
    assert ingest(any_lake, "--scale", "200").returncode == 0
    crashed = ingest(any_lake, "--scale", "200", env={"LAGO_FAILPOINT": "after-publish"})
    assert crashed.returncode == -9
    rerun = ingest(any_lake, "--scale", "200")
    assert rerun.returncode == 0, rerun.stderr
    assert "completing interrupted capture" in rerun.stderr
    assert change_set(any_lake) == change_set(twin)
    assert len(keys(any_lake, "raw/loyalty/cdc/")) == 4


def test_a_second_run_exits_clearly_while_the_lake_is_locked_and_waits_with_wait(any_lake: str, tmp_path: Path) -> None:
    folder = clientes_csv(tmp_path / "v", VERSIONS[0])
    lock = LakeLock(open_lake(any_lake))
    with lock:
        blocked = ingest(any_lake, *csv_args(folder, "clientes"))
        assert blocked.returncode == 5
        assert "is locked by another ingestion run" in blocked.stderr
        assert f"pid {os.getpid()}" in blocked.stderr
    assert keys(any_lake, "raw/") == []

    holder = LakeLock(open_lake(any_lake))
    holder.__enter__()
    release = threading.Timer(1.5, holder.__exit__, args=(None, None, None))
    release.start()
    started = time.monotonic()
    waited = ingest(any_lake, *csv_args(folder, "clientes"), "--wait", "60")
    release.join()
    assert waited.returncode == 0, waited.stderr
    assert time.monotonic() - started >= 1.0
    assert keys(any_lake, "raw/loyalty/full-load/clientes/")


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    lake_path = tmp_path / "lake"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lake = LocalLake(lake_path)
    lake.create_exclusive(
        LOCK_KEY,
        json.dumps(
            {
                "run_id": "x",
                "pid": int(dead.stdout),
                "host": os.uname().nodename,
                "acquired_at": "2026-01-01T00:00:00+00:00",
            }
        ).encode(),
    )
    result = ingest(lake_path, *csv_args(clientes_csv(tmp_path / "v", VERSIONS[0]), "clientes"))
    assert result.returncode == 0, result.stderr
    assert "taking over stale lock" in result.stderr
    assert not (lake_path / LOCK_KEY).exists()


def test_two_concurrent_runs_exactly_one_proceeds(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = start_ingest(lake, "--scale", "200000")
    deadline = time.monotonic() + 30
    while not (lake / LOCK_KEY).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = ingest(lake, "--scale", "200000")
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 5 and "locked" in second.stderr
    assert len(list((lake / "raw/loyalty/full-load").rglob("*.parquet"))) == 4


def test_schedule_runs_captures_on_an_interval_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    counted = run_cli("schedule", "--every", "0.2s", "--max-runs", "3", "--lake", str(lake), "--scale", "100")
    assert counted.returncode == 0, counted.stderr
    state = json.loads((lake / "_ingestion/loyalty/clientes/state.json").read_text())
    assert [c["day"] for c in state["captures"]] == [0, 1, 2]

    process = start_cli("schedule", "--every", "1h", "--lake", str(lake), "--scale", "100", stdout=None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = json.loads((lake / "_ingestion/loyalty/transacao_produto/state.json").read_text())
        if len(state["captures"]) == 4:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "stopping" in stderr
    assert not (lake / LOCK_KEY).exists()


def test_bad_interval_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("schedule", "--every", "often", "--lake", str(tmp_path), timeout=60)
    assert result.returncode == 2 and "--every 'often'" in result.stderr


def test_a_csv_capture_stores_its_changes_until_they_outgrow_a_full_snapshot(tmp_path: Path) -> None:
    """Small diffs are stored as change files on top of the last full snapshot; a diff that takes the files
    since past a quarter of the table writes a full snapshot again. Every capture's changes stay exact."""
    header = "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto"
    lake = tmp_path / "lake"

    def capture(version: int, names: dict[int, str]) -> dict[str, object]:
        folder = tmp_path / f"v{version}"
        folder.mkdir()
        rows = [f"{key};{name};;chat" for key, name in sorted(names.items())]
        (folder / "produtos.csv").write_text("\n".join([header, *rows]) + "\n")
        result = ingest(lake, *csv_args(folder, "produtos"))
        assert result.returncode == 0, result.stderr
        state: dict[str, object] = json.loads((lake / "_ingestion/loyalty/produtos/state.json").read_text())
        return state

    names = {key: f"p{key}" for key in range(1, 201)}
    state = capture(0, names)
    base = state["snapshot_key"]
    names[1], names[2] = "changed", "changed"  # 1% of the table: stored as a change file
    state = capture(1, names)
    assert state["snapshot_key"] == base and len(state["snapshot_deltas"]) == 1  # type: ignore[arg-type]
    for key in range(3, 60):  # the files since would hold 59 of 200 rows: a full snapshot again
        names[key] = "changed"
    state = capture(2, names)
    assert state["snapshot_key"] != base and state["snapshot_deltas"] == []
    names[100] = "changed"
    state = capture(3, names)
    captures = state["captures"]
    assert isinstance(captures, list)
    assert [(c["kind"], c["updates"]) for c in captures] == [("full-load", 0), ("cdc", 2), ("cdc", 57), ("cdc", 1)]
    assert len(state["snapshot_deltas"]) == 1  # type: ignore[arg-type]


def test_empty_text_and_null_are_told_apart_by_the_capture(tmp_path: Path) -> None:
    """`""` (the empty text) -> empty field (NULL) is an update, and back again; NULL in both snapshots is none."""
    header = "IdProduto;DescNomeProduto;DescDescricaoProduto;DescCategoriaProduto"
    lake = tmp_path / "lake"
    versions = [
        ['1;Um;"";chat', "2;Dois;;chat", "3;Tres;x;chat"],
        ["1;Um;;chat", "2;Dois;;chat", "3;Tres;x;chat"],  # 1: '' -> NULL; 2: NULL in both
        ["1;Um;;chat", '2;Dois;"";chat', "3;Tres;x;chat"],  # 2: NULL -> ''
        ["1;Um;;chat", '2;Dois;"";chat', "3;Tres;x;chat"],  # no change
    ]
    captured = []
    for number, rows in enumerate(versions):
        folder = tmp_path / f"v{number}"
        folder.mkdir()
        (folder / "produtos.csv").write_text("\n".join([header, *rows]) + "\n")
        result = ingest(lake, *csv_args(folder, "produtos"))
        assert result.returncode == 0, result.stderr
        state = json.loads((lake / "_ingestion/loyalty/produtos/state.json").read_text())
        last = state["captures"][-1]
        captured.append((last["kind"], last["inserts"], last["updates"], last["deletes"]))
    assert captured == [("full-load", 3, 0, 0), ("cdc", 0, 1, 0), ("cdc", 0, 1, 0), ("unchanged", 0, 0, 0)]
    updates = [row for row in change_set(lake) if row[0] == "cdc"]
    assert [(row[2], row[4], row[6]) for row in updates] == [("U", 1, None), ("U", 2, "")]
