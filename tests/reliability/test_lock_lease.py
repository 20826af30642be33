"""The lake's lock as a lease: renewed by its holder, judged stale by the run that wants it (a lease seen unchanged
for longer than its length on that run's own clock, whatever times the holder wrote), taken over by a conditional
replace (never a blind delete), and never a loop or a traceback for a malformed lock document.

Local and S3 lakes are the same test, by parameter.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reliability_support import History, Recorder, csv_args, ingest, lake_kind

from ingestion.errors import LakeLockedError, LockHeldError, LockLostError
from ingestion.lake import Lake, LocalLake, S3Lake
from ingestion.lock import LOCK_KEY, LakeLock


@pytest.fixture
def lake_uri(any_lake: str) -> str:
    return any_lake


def open_test_lake(uri: str) -> Lake:
    return S3Lake(uri) if uri.startswith("s3://") else LocalLake(Path(uri))


def foreign_lock(
    lake: Lake, *, expires_in: timedelta, host: str = "another-host.example", lease_seconds: float = 120
) -> None:
    """The lock of a run on another host whose clock reads `expires_in` less than its lease's end."""
    now = datetime.now(UTC)
    document = {
        "run_id": "a-run-on-another-host",
        "pid": 4242,
        "host": host,
        "acquired_at": (now - timedelta(minutes=10)).isoformat(),
        "renewed_at": (now - timedelta(minutes=1)).isoformat(),
        "expires_at": (now + expires_in).isoformat(),
        "lease_seconds": lease_seconds,
    }
    assert lake.create_exclusive(LOCK_KEY, json.dumps(document).encode())


def test_a_dead_holder_on_another_host_is_taken_over_once_its_lease_stayed_unchanged(
    lake_uri: str, history: History, report: Recorder
) -> None:
    lake = open_test_lake(lake_uri)
    foreign_lock(lake, expires_in=timedelta(minutes=1), lease_seconds=2)
    blocked = ingest(lake_uri, *csv_args(history.folders[0]))
    assert blocked.returncode == 5, blocked.stderr
    assert "another-host.example" in blocked.stderr and "of its 2 s lease" in blocked.stderr
    # its holder stopped renewing: a run that waits longer than the lease sees it unchanged and takes it over
    taken = ingest(lake_uri, *csv_args(history.folders[0]), "--wait", "10")
    report.record(
        f"lock of a run that died on another host, {lake_kind(lake_uri)} lake",
        runs=2,
        note=f"no wait: exit {blocked.returncode}; --wait 10 on a 2 s lease: exit {taken.returncode}",
    )
    assert taken.returncode == 0, taken.stderr
    assert "seen unchanged for" in taken.stderr
    assert lake.read_bytes(LOCK_KEY) is None


@pytest.mark.parametrize("skew", [timedelta(days=365), -timedelta(days=365)], ids=["ahead", "behind"])
def test_a_lease_is_judged_by_the_taker_not_by_the_holders_clock(
    skew: timedelta, lake_uri: str, history: History, report: Recorder
) -> None:
    """A dead holder whose clock was a year ahead does not block the lake for a year; a live holder whose clock
    is a year behind (its expiry long past on the taker's clock) keeps its lock."""
    lake = open_test_lake(lake_uri)
    if skew > timedelta(0):
        foreign_lock(lake, expires_in=skew, lease_seconds=2)
        start = time.monotonic()
        result = ingest(lake_uri, *csv_args(history.folders[0]), "--wait", "30")
        took = time.monotonic() - start
        report.record(
            f"dead holder whose clock was a year ahead, {lake_kind(lake_uri)} lake",
            runs=1,
            note=f"exit {result.returncode} after {took:.0f} s (2 s lease, --wait 30)",
        )
        assert result.returncode == 0, result.stderr
        assert "seen unchanged for" in result.stderr
        assert lake.read_bytes(LOCK_KEY) is None
        return
    with LakeLock(lake, lease_seconds=1.2, now=lambda: datetime.now(UTC) + skew) as holder:
        assert datetime.fromisoformat(json.loads(lake.read_bytes(LOCK_KEY) or b"{}")["expires_at"]) < datetime.now(UTC)
        taker = LakeLock(open_test_lake(lake_uri), wait=3.0)
        with pytest.raises(LockHeldError) as refused:
            taker.__enter__()
        holder.check()
        assert json.loads(lake.read_bytes(LOCK_KEY) or b"{}")["run_id"] == holder.run_id
    report.record(
        f"live holder whose clock is a year behind, {lake_kind(lake_uri)} lake",
        runs=2,
        note="renewing holder kept its lock through a 3 s wait (1.2 s lease)",
    )
    assert refused.value.lease_seconds == 1.2
    assert refused.value.holder


def test_the_holder_renews_its_lease_while_it_runs(lake_uri: str, report: Recorder) -> None:
    lake = open_test_lake(lake_uri)
    with LakeLock(lake, lease_seconds=1.2) as lock:
        first = json.loads(lake.read_bytes(LOCK_KEY) or b"{}")
        threading.Event().wait(2.5)  # two lease lengths: without renewal the lease would have expired
        renewed = json.loads(lake.read_bytes(LOCK_KEY) or b"{}")
        assert renewed["run_id"] == first["run_id"] == lock.run_id
        assert datetime.fromisoformat(renewed["expires_at"]) > datetime.now(UTC)
        assert renewed["expires_at"] > first["expires_at"]
        with pytest.raises(LakeLockedError):
            LakeLock(lake, lease_seconds=1.2).__enter__()
        lock.check()
    assert lake.read_bytes(LOCK_KEY) is None
    report.record(
        f"lock lease renewed by a heartbeat while its run works, {lake_kind(lake_uri)} lake",
        runs=1,
        note="lease 1.2 s, held 2.5 s",
    )


def race(count: int, work: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except LakeLockedError as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_runs_taking_over_one_expired_lease_at_once_have_one_winner(lake_uri: str, report: Recorder) -> None:
    lake = open_test_lake(lake_uri)
    foreign_lock(lake, expires_in=-timedelta(minutes=5), lease_seconds=1)
    locks = [LakeLock(open_test_lake(lake_uri), wait=4) for _ in range(6)]
    outcome = race(len(locks), lambda i: locks[i].__enter__())
    winners = [lock for lock, result in zip(locks, outcome, strict=True) if result is lock]
    report.record(
        f"six runs take over one expired lease at the same instant, {lake_kind(lake_uri)} lake",
        runs=6,
        note=f"{len(winners)} winner(s), {sum(isinstance(r, LakeLockedError) for r in outcome)} refused",
    )
    assert len(winners) == 1, outcome
    assert all(isinstance(r, LakeLockedError) for r in outcome if r is not winners[0])
    holder = json.loads(lake.read_bytes(LOCK_KEY) or b"{}")
    assert holder["run_id"] == winners[0].run_id
    winners[0].__exit__(None, None, None)


def test_a_holder_whose_lease_was_taken_over_stops_writing(tmp_path: Path, report: Recorder) -> None:
    lake = LocalLake(tmp_path / "lake")
    slow = LakeLock(lake, lease_seconds=3600)
    slow.__enter__()
    try:
        # another run judged the lease stale and replaced it (as after a long pause of the holder)
        current = lake.read_versioned(LOCK_KEY)
        assert current is not None
        assert lake.replace_if(LOCK_KEY, json.dumps({"run_id": "usurper"}).encode(), current[1])
        slow.renew()
        with pytest.raises(LockLostError) as lost:
            slow.check()
        assert lost.value.reason
    finally:
        slow.__exit__(None, None, None)
    # the run that lost the lock does not delete the new holder's lock on its way out
    assert json.loads(lake.read_bytes(LOCK_KEY) or b"{}") == {"run_id": "usurper"}
    report.record("a holder that lost its lease writes nothing more", runs=1, note="renewal refused -> check() raises")


MALFORMED = {
    "null": b"null",
    "empty list": b"[]",
    "a number": b"42",
    "not JSON": b"{ half written",
    "naive timestamp": json.dumps(
        {"run_id": "x", "pid": 1, "host": "h", "acquired_at": "2026-01-01T00:00:00"}
    ).encode(),
    "expiry not a time": json.dumps({"run_id": "x", "expires_at": "soon"}).encode(),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_lock_document_is_taken_over_not_a_loop_or_traceback(
    name: str, history: History, tmp_path: Path, report: Recorder
) -> None:
    lake_path = tmp_path / "lake"
    LocalLake(lake_path).create_exclusive(LOCK_KEY, MALFORMED[name])
    result = ingest(lake_path, *csv_args(history.folders[0]), "--wait", "0", timeout=60)
    report.record(f"lock.json holding {name}", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "unusable" in result.stderr
    assert not (lake_path / LOCK_KEY).exists()


def test_a_folder_where_the_lock_belongs_is_a_lake_error(history: History, tmp_path: Path, report: Recorder) -> None:
    lake_path = tmp_path / "lake"
    (lake_path / LOCK_KEY).mkdir(parents=True)
    result = ingest(lake_path, *csv_args(history.folders[0]), timeout=60)
    report.record("lock.json is a folder", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert "lock.json is a folder" in result.stderr


@pytest.mark.parametrize("wait", ["nan", "inf", "-1"])
def test_wait_must_be_a_finite_number_of_seconds(wait: str, tmp_path: Path, history: History) -> None:
    result = ingest(tmp_path / "lake", *csv_args(history.folders[0]), "--wait", wait, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "finite number of seconds" in result.stderr
    assert not os.path.exists(tmp_path / "lake" / "raw")
