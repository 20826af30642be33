"""Concurrency: two or more ingestion runs on one lake. Exactly one writes; the others exit 5 or wait (--wait).

A run is paused inside its lock with SIGSTOP, so "the other run is busy" is a fact, not a race the test hopes to
win; a second scenario starts three runs at the same instant and checks that whatever interleaving happened,
the lake holds the change set of one run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from reliability_support import (
    History,
    LakeView,
    Recorder,
    change_rows,
    compare,
    csv_args,
    fingerprint,
    ingest,
    lake_kind,
    start_ingest,
)

pytestmark = pytest.mark.slow

LOCK = "_ingestion/lock.json"


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _holds_the_lock(view: LakeView, process: subprocess.Popen[str]) -> bool:
    """Read while `process` is stopped, so the answer stays true until it is continued."""
    document = view.read(LOCK)
    return document is not None and json.loads(document).get("pid") == process.pid


def _pause_inside_the_lock(view: LakeView, process: subprocess.Popen[str]) -> None:
    """Stop `process` at a moment it holds the lake's lock.

    Seeing the lock and then stopping the run is a race (the run may release it in between, or a listing may lag);
    stopping first and then reading the lock document is not.
    """

    def stopped_holding() -> bool:
        assert process.poll() is None, "the first run ended before it could be paused inside its lock"
        process.send_signal(signal.SIGSTOP)
        if _holds_the_lock(view, process):
            return True
        process.send_signal(signal.SIGCONT)
        return False

    _wait_for(stopped_holding)


def _one_writer(lake: str, view: LakeView, history: History) -> None:
    """A holds the lock (paused); B exits 5 naming A and changes nothing; C waits with --wait, then proceeds."""
    v0, v1, v2 = history.folders
    first = start_ingest(lake, *csv_args(v0))
    try:
        _pause_inside_the_lock(view, first)
        before = fingerprint(view)
        blocked = ingest(lake, *csv_args(v1))
        assert blocked.returncode == 5, blocked.stderr
        assert "is locked by another ingestion run" in blocked.stderr
        assert f"pid {first.pid}" in blocked.stderr and "--wait" in blocked.stderr
        assert fingerprint(view) == before, "the refused run changed the lake"
        waiting = start_ingest(lake, *csv_args(v1), "--wait", "60")
        time.sleep(1.5)
        assert waiting.poll() is None, "the run with --wait did not wait"
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, first_err
    _, waiting_err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, waiting_err
    last = ingest(lake, *csv_args(v2))
    assert last.returncode == 0, last.stderr


def test_a_second_run_exits_5_and_a_third_waits(
    history: History, any_lake: str, lake_view: LakeView, report: Recorder
) -> None:
    _one_writer(any_lake, lake_view, history)
    rows = compare(history.twin, change_rows(lake_view))
    report.record(
        f"two runs on one {lake_kind(any_lake)} lake (one paused in its lock), then --wait",
        runs=4,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note="second exits 5 naming the holder, third waits",
    )
    assert rows.exact, rows


def _stampede(lake: str, view: LakeView, history: History, starters: int = 3) -> list[int]:
    """`starters` runs of the same snapshot started at once, then the rest of the history."""
    processes: list[subprocess.Popen[str]] = [
        start_ingest(lake, *csv_args(history.folders[0])) for _ in range(starters)
    ]
    codes = []
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode in (0, 5), err
        if process.returncode == 5:
            assert "is locked by another ingestion run" in err
        codes.append(process.returncode)
    assert 0 in codes
    for folder in history.folders[1:]:
        result = ingest(lake, *csv_args(folder))
        assert result.returncode == 0, result.stderr
    return codes


def test_runs_started_at_once_publish_one_change_set(
    history: History, any_lake: str, lake_view: LakeView, report: Recorder
) -> None:
    codes = _stampede(any_lake, lake_view, history)
    rows = compare(history.twin, change_rows(lake_view))
    report.record(
        f"three runs started at the same instant, {lake_kind(any_lake)} lake",
        runs=len(codes) + len(history.folders) - 1,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note=f"exit codes {sorted(codes)}",
    )
    assert rows.exact, rows
