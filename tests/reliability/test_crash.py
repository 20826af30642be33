"""Crashes: the ingestion process SIGKILLed at every publish step, on a local and an S3 lake.

Every scenario replays the same source history (three snapshots of clientes and produtos with inserts, updates,
deletes and re-inserts) and compares the change rows it published with a twin lake that never crashed. While the
runs go on, an observer reads raw/ over and over: a file there is a whole Parquet file, or not there at all.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from reliability_support import (
    History,
    LakeView,
    LocalView,
    RawObserver,
    Recorder,
    assert_raw_complete,
    change_rows,
    compare,
    csv_args,
    fingerprint,
    ingest,
    lake_kind,
    start_ingest,
)
from support.cli import start_cli

pytestmark = pytest.mark.slow

# Every failpoint of ingestion/capture.py, in the order a capture reaches them.
FAILPOINTS = ["after-stage-snapshot", "after-pending", "after-publish", "after-state", "before-cleanup"]
SIGKILLED = -signal.SIGKILL


def replay(lake: str | Path, view: LakeView, folders: list[Path], crashes: dict[int, str]) -> int:
    """Capture each folder in turn; at the captures in `crashes`, first a run killed at that failpoint.

    Returns the number of runs. Every run is followed by a look at raw/.
    """
    runs = 0
    for number, folder in enumerate(folders):
        if number in crashes:
            crashed = ingest(lake, *csv_args(folder), env={"LAGO_FAILPOINT": crashes[number]})
            runs += 1
            assert crashed.returncode == SIGKILLED, crashed.stderr
            assert f"failpoint {crashes[number]}" in crashed.stderr
            assert_raw_complete(view)
        result = ingest(lake, *csv_args(folder))
        runs += 1
        assert result.returncode == 0, result.stderr
        assert_raw_complete(view)
    return runs


def assert_settled(view: LakeView) -> None:
    keys = view.list_keys("_ingestion/")
    assert "_ingestion/lock.json" not in keys, "the lock outlived the last run"
    assert not [k for k in keys if k.endswith("pending.json")], "a pending capture outlived the rerun"


@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_a_crash_at_each_step_converges_to_the_twin(
    failpoint: str, history: History, any_lake: str, lake_view: LakeView, report: Recorder
) -> None:
    observer = RawObserver(lake_view, interval=0.05 if lake_kind(any_lake) == "S3" else 0.01)
    with observer.watching():
        runs = replay(any_lake, lake_view, history.folders, {0: failpoint, 1: failpoint})
    result = compare(history.twin, change_rows(lake_view))
    report.record(
        f"crash at `{failpoint}` (full-load and cdc), {lake_kind(any_lake)} lake",
        runs=runs,
        expected=result.expected,
        lost=result.lost,
        duplicated=result.duplicated,
        note=f"raw/ read {observer.observations} times during the runs",
    )
    assert result.exact, result
    assert_settled(lake_view)


def test_rerun_with_a_newer_snapshot_after_a_crash_also_captures_it(
    history: History, tmp_path: Path, report: Recorder
) -> None:
    """Crash after publishing v1; the next run is given v2. It must commit v1, then capture v2, like the twin.

    Today the rerun commits v1 and returns: v2 is silently not captured (exit 0) until yet another run.
    """
    lake = tmp_path / "lake"
    view = LocalView(lake)
    v0, v1, v2 = history.folders
    assert ingest(lake, *csv_args(v0)).returncode == 0
    assert ingest(lake, *csv_args(v1), env={"LAGO_FAILPOINT": "after-publish"}).returncode == SIGKILLED
    rerun = ingest(lake, *csv_args(v2))
    assert rerun.returncode == 0, rerun.stderr
    twin = tmp_path / "twin"
    for folder in (v0, v1, v2):
        assert ingest(twin, *csv_args(folder)).returncode == 0
    result = compare(change_rows(LocalView(twin)), change_rows(view))
    report.record(
        "crash `after-publish`, rerun given the next snapshot",
        runs=3,
        expected=result.expected,
        lost=result.lost,
        duplicated=result.duplicated,
        note="rerun completes the crashed capture but skips its own",
    )
    assert result.exact, result


@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_a_crash_leaves_no_orphaned_state_after_the_rerun(
    failpoint: str, history: History, tmp_path: Path, report: Recorder
) -> None:
    """After crash + rerun, `_ingestion/` holds what a lake that never crashed holds: per table a state and one
    snapshot (each snapshot is a full copy of the table: a leak per crash is a table's size)."""
    lake = tmp_path / "lake"
    view = LocalView(lake)
    runs = replay(lake, view, history.folders[:2], {1: failpoint})
    keys = view.list_keys("_ingestion/")
    snapshots = [k for k in keys if "/snapshots/" in k]
    expected = sorted(json.loads(view.read(k) or b"{}")["snapshot_key"] for k in keys if k.endswith("state.json"))
    report.record(
        f"no orphaned state after a crash at `{failpoint}`",
        runs=runs,
        note=f"{len(snapshots) - len(expected)} orphaned snapshot(s)",
    )
    assert sorted(snapshots) == expected
    assert [k for k in keys if "/snapshots/" not in k] == [
        "_ingestion/lake.json",
        "_ingestion/loyalty/clientes/state.json",
        "_ingestion/loyalty/produtos/state.json",
    ]


@pytest.mark.parametrize(("source", "tables"), [("loyalty", 4), ("hotmart", 3)])
def test_kill_at_random_moments_converges_to_the_twin(
    source: str, tables: int, tmp_path: Path, report: Recorder
) -> None:
    """SIGKILL at seeded random moments of simulator runs (not only at failpoints): whatever step a run dies in —
    mid-write, mid-state-update, in a later table — the rerun converges to the twin. Hotmart is an events source
    (ingestion/events.py), loyalty a snapshot source (ingestion/capture.py)."""
    days, args = 3, ("--source", source, "--scale", "2000")
    twin = tmp_path / "twin"
    for _ in range(days):
        assert ingest(twin, *args).returncode == 0
    lake = tmp_path / "lake"
    view = LocalView(lake)
    rng = random.Random(20261124)
    runs = kills = 0
    observer = RawObserver(view)
    with observer.watching():
        for day in range(days):
            process = start_ingest(lake, *args)
            deadline = time.monotonic() + 30
            while not (lake / "_ingestion/lock.json").exists() and time.monotonic() < deadline:
                time.sleep(0.005)  # from here on the run writes: kill it somewhere in the next ~0.6 s
            time.sleep(rng.uniform(0.0, 0.6))
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=60)
            runs += 1
            assert_raw_complete(view)
            if _days_captured(view) == [day] * tables:
                continue  # the run got through every table before the kill: the day is complete
            kills += 1
            rerun = ingest(lake, *args)
            runs += 1
            assert rerun.returncode == 0, rerun.stderr
            assert _days_captured(view) == [day] * tables
    result = compare(change_rows(LocalView(twin)), change_rows(view))
    report.record(
        f"SIGKILL at random moments, simulator, {source} ({tables} tables), local lake",
        runs=runs,
        expected=result.expected,
        lost=result.lost,
        duplicated=result.duplicated,
        note=f"{kills} of {days} runs killed mid-run",
    )
    assert result.exact, result
    assert_settled(view)


def test_rerun_after_a_crash_in_the_second_source_keeps_every_source_on_one_day(
    tmp_path: Path, report: Recorder
) -> None:
    """The default run captures every source (hotmart events, then loyalty). Killed once hotmart has its day 1 and
    loyalty not yet, the rerun must bring loyalty to day 1 and leave hotmart alone, as a run that never crashed."""
    args = ("--scale", "2000")
    twin = tmp_path / "twin"
    for _ in range(2):
        assert ingest(twin, *args).returncode == 0
    lake = tmp_path / "lake"
    view = LocalView(lake)
    assert ingest(lake, *args).returncode == 0
    process = start_ingest(lake, *args)
    deadline = time.monotonic() + 60
    while _days_captured(view, "hotmart") != [1, 1, 1] and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    if _days_captured(view, "loyalty") == [1, 1, 1, 1]:
        pytest.skip("the run finished loyalty too before it could be killed")
    rerun = ingest(lake, *args)
    assert rerun.returncode == 0, rerun.stderr
    result = compare(change_rows(LocalView(twin)), change_rows(view))
    report.record(
        "crash between sources (hotmart done, loyalty not), rerun",
        runs=3,
        expected=result.expected,
        lost=result.lost,
        duplicated=result.duplicated,
        note=f"days after the rerun: hotmart {_days_captured(view, 'hotmart')}, "
        f"loyalty {_days_captured(view, 'loyalty')}",
    )
    assert _days_captured(view) == [1] * 7
    assert result.exact, result


def _days_captured(view: LakeView, source: str = "") -> list[int | None]:
    """The simulated day of each table's last capture, for every table of `source` (default: of every source)."""
    days: list[int | None] = []
    for key in view.list_keys(f"_ingestion/{source}"):
        if key.endswith("/state.json"):
            raw = view.read(key)
            days.append(json.loads(raw)["captures"][-1]["day"] if raw else None)
    return days


# -- Ctrl-C ----------------------------------------------------------------------------------------------------------

CLIENTES_HEADER = "idCliente;flEmail;flTwitch;flYouTube;flBlueSky;flInstagram;qtdePontos;DtCriacao;DtAtualizacao"
BIG = 600_000  # rows: DuckDB's query of the capture lasts long enough to be interrupted in its middle


def _big_clientes(folder: Path, version: int) -> Path:
    """`BIG` customers; in each version every third one has other points (an update)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "clientes.csv").open("w", encoding="utf-8") as handle:
        handle.write(CLIENTES_HEADER + "\n")
        for i in range(BIG):
            points = i * version if i % 3 == 0 else i
            handle.write(f"c{i:08d};1;0;1;;0;{points};2024-01-01 10:00:00.000;2024-02-01 10:00:00.000\n")
    return folder


@pytest.mark.parametrize("capture", ["full load", "diff"])
def test_ctrl_c_while_duckdb_writes_the_change_file_exits_130_and_the_rerun_completes(
    capture: str, any_lake: str, lake_view: LakeView, tmp_path: Path, report: Recorder
) -> None:
    """A Ctrl-C (SIGINT to the process group, as a terminal sends it) as soon as DuckDB starts writing the change
    file, i.e. in the middle of its query (on S3, while it streams the stored snapshot): one line, exit 130, the
    lake as it was, and the rerun captures it all."""
    lake = any_lake
    view = lake_view
    first = _big_clientes(tmp_path / "v1", 1)
    source = first
    if capture == "diff":
        assert ingest(lake, *csv_args(first, "clientes")).returncode == 0
        source = _big_clientes(tmp_path / "v2", 2)
    before = fingerprint(view)
    work = tmp_path / "work"
    work.mkdir()
    process = start_cli(
        "run", "--lake", lake, *csv_args(source, "clientes"), env={"TMPDIR": str(work)}, new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(work.glob("lago-capture-*/loyalty/clientes/changes_*.parquet")):
        assert process.poll() is None and time.monotonic() < deadline, "the capture never wrote its change file"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    errors = [line.split(": ", 1)[-1] for line in stderr.splitlines() if " ERROR " in line]
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert errors == ["interrupted"], stderr
    assert fingerprint(view) == before
    assert not list(work.iterdir()), "the interrupted run left its work folder behind"
    rerun = ingest(lake, *csv_args(source, "clientes"))
    assert rerun.returncode == 0, rerun.stderr
    state = json.loads(view.read("_ingestion/loyalty/clientes/state.json") or b"{}")
    last = state["captures"][-1]
    expected = BIG if capture == "full load" else BIG // 3 - 1  # key 0 keeps 0 points
    found = last["inserts"] if capture == "full load" else last["updates"]
    report.record(
        f"Ctrl-C while DuckDB writes the change file of a {capture} ({BIG} rows, {lake_kind(lake)}), then a rerun",
        runs=2,
        expected=expected,
        lost=max(expected - found, 0),
        duplicated=max(found - expected, 0),
        note=f"exit {process.returncode}, one line",
    )
    assert (last["kind"], found) == ("full-load" if capture == "full load" else "cdc", expected)
    assert last["snapshot_rows"] == BIG
