"""S3 faults: a server that goes away mid-run, and a network that answers 500/503/SlowDown or drops connections.

The faults come from a real SeaweedFS stopped and restarted, and from `fault_proxy.FaultProxy` on loopback in
front of it. Every scenario ends by comparing the lake's change rows with the twin run that met no fault.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fault_proxy import Fault, FaultProxy, FaultRule, random_faults
from reliability_support import (
    History,
    Recorder,
    S3View,
    assert_raw_complete,
    change_rows,
    compare,
    csv_args,
    ingest,
)

pytestmark = [pytest.mark.s3, pytest.mark.slow]

LOCK_PATH = "/_ingestion/lock.json"


def _is_lock_create(method: str, path: str) -> bool:
    return method == "PUT" and path.split("?")[0].endswith(LOCK_PATH)


@contextmanager
def proxied(seaweedfs: Any, rule: FaultRule, **kwargs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(seaweedfs.endpoint_url, rule, **kwargs) as proxy:
        yield proxy


@pytest.fixture
def running_seaweedfs(seaweedfs: Any) -> Iterator[Any]:
    """The session's server, started again after a test that stopped it (other tests need it)."""
    yield seaweedfs
    if not seaweedfs.running:
        seaweedfs.start()


def test_500_503_slowdown_and_resets_are_retried_without_duplicates(
    history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    # A conditional create of the lock whose answer is lost has a test of its own (below); every
    # other request may meet any fault.
    randomly = random_faults(seed=6, rate=0.2)

    def rule(method: str, path: str, number: int) -> Fault | None:
        fault = randomly(method, path, number)
        return None if fault is Fault.RESET_AFTER and _is_lock_create(method, path) else fault

    view = S3View.of(seaweedfs.client(), s3_lake_env)
    with proxied(seaweedfs, rule, max_requests=3000, lifetime=150) as proxy:
        env = {"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "10"}
        for folder in history.folders:
            result = ingest(s3_lake_env, *csv_args(folder), env=env)
            assert result.returncode == 0, result.stderr
            assert_raw_complete(view)
    result_rows = compare(history.twin, change_rows(view))
    injected = ", ".join(f"{n}x {kind}" for kind, n in sorted(proxy.faults.items()))
    report.record(
        "S3 behind a proxy failing 20% of requests (500, 503, SlowDown, resets)",
        runs=len(history.folders),
        expected=result_rows.expected,
        lost=result_rows.lost,
        duplicated=result_rows.duplicated,
        note=f"{proxy.requests} requests, {injected}",
    )
    assert result_rows.exact, result_rows
    assert set(proxy.faults) == {f.value for f in Fault}, proxy.faults


def test_every_write_whose_answer_is_lost_is_retried_without_duplicates(
    history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    """The first attempt of every PUT and DELETE reaches the server, which acts on it; the answer never comes
    back. The retried publish meets its own file (412 on If-None-Match) and must take it for done."""
    seen: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def rule(method: str, path: str, number: int) -> Fault | None:
        if method not in ("PUT", "DELETE") or _is_lock_create(method, path):
            return None
        with lock:
            first = (method, path) not in seen
            seen.add((method, path))
        return Fault.RESET_AFTER if first else None

    view = S3View.of(seaweedfs.client(), s3_lake_env)
    with proxied(seaweedfs, rule) as proxy:
        env = {"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "4"}
        for folder in history.folders[:2]:  # a full load and a change file: every kind of write
            result = ingest(s3_lake_env, *csv_args(folder), env=env)
            assert result.returncode == 0, result.stderr
    result = ingest(s3_lake_env, *csv_args(history.folders[2]))
    assert result.returncode == 0, result.stderr
    rows = compare(history.twin, change_rows(view))
    report.record(
        "S3: the answer to every first PUT/DELETE lost (server acted)",
        runs=len(history.folders),
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note=f"{sum(proxy.faults.values())} answers dropped",
    )
    assert rows.exact, rows


def test_a_lost_answer_to_the_lock_create_does_not_lock_the_run_out(
    history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    dropped: list[str] = []

    def rule(method: str, path: str, number: int) -> Fault | None:
        if _is_lock_create(method, path) and not dropped:
            dropped.append(path)
            return Fault.RESET_AFTER
        return None

    with proxied(seaweedfs, rule) as proxy:
        result = ingest(
            s3_lake_env, *csv_args(history.folders[0]), env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "4"}
        )
    view = S3View.of(seaweedfs.client(), s3_lake_env)
    report.record(
        "S3: the answer to the lock's conditional PUT lost",
        runs=1,
        note=f"exit {result.returncode}; lock left behind: {'_ingestion/lock.json' in view.list_keys('_ingestion/')}",
    )
    assert result.returncode == 0, result.stderr
    assert "_ingestion/lock.json" not in view.list_keys("_ingestion/")


def _stop_on_first_publish(seaweedfs: Any, then: Callable[[], None] | None = None) -> Callable[[str, str, int], None]:
    """A proxy hook that kills the real server just before the first data file reaches it."""
    done = threading.Event()

    def hook(method: str, path: str, number: int) -> None:
        if method == "PUT" and "/raw/" in path and not done.is_set():
            done.set()
            seaweedfs.stop(graceful=False)
            if then is not None:
                threading.Thread(target=then, daemon=True).start()

    return hook


def test_server_stopped_mid_run_fails_clearly_then_a_rerun_completes(
    history: History, s3_lake_env: str, running_seaweedfs: Any, report: Recorder
) -> None:
    seaweedfs = running_seaweedfs
    v0, v1, v2 = history.folders
    assert ingest(s3_lake_env, *csv_args(v0)).returncode == 0
    with proxied(seaweedfs, lambda *_: None, on_request=_stop_on_first_publish(seaweedfs)) as proxy:
        failed = ingest(s3_lake_env, *csv_args(v1), env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "2"})
    assert not seaweedfs.running
    assert failed.returncode == 4, failed.stderr
    assert "Traceback" not in failed.stderr
    assert "S3 " in failed.stderr and " failed: " in failed.stderr, failed.stderr
    seaweedfs.start()
    view = S3View.of(seaweedfs.client(), s3_lake_env)
    assert_raw_complete(view)
    for folder in (v1, v2):
        rerun = ingest(s3_lake_env, *csv_args(folder))
        assert rerun.returncode == 0, rerun.stderr
    rows = compare(history.twin, change_rows(view))
    report.record(
        "SeaweedFS killed at the first publish (2 attempts), restarted, rerun",
        runs=4,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note="exit 4, then converged",
    )
    assert rows.exact, rows


def test_an_s3_outage_mid_run_is_reported_as_the_step_that_failed(
    history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    """The error a user reads must name what failed (the publish of the change file), not the clean-up after it.
    The outage is the proxy's: from the first data file on, every connection is dropped."""
    assert ingest(s3_lake_env, *csv_args(history.folders[0])).returncode == 0
    dark = threading.Event()

    def blackout(method: str, path: str, number: int) -> Fault | None:
        if method == "PUT" and "/raw/" in path:
            dark.set()
        return Fault.RESET_BEFORE if dark.is_set() else None

    with proxied(seaweedfs, blackout) as proxy:
        failed = ingest(
            s3_lake_env, *csv_args(history.folders[1]), env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "2"}
        )
    errors = [line for line in failed.stderr.splitlines() if " ERROR " in line]
    report.record(
        "S3 outage at the first publish: the error names the publish",
        runs=2,
        note=f"exit {failed.returncode}; reported: {errors[-1].split(': ', 1)[-1][:60] if errors else '-'}...",
    )
    assert failed.returncode == 4
    assert "S3 publish" in failed.stderr and "/raw/loyalty/cdc/clientes/" in failed.stderr, failed.stderr


def test_server_restarted_while_the_run_retries_completes_the_run(
    history: History, s3_lake_env: str, running_seaweedfs: Any, report: Recorder
) -> None:
    seaweedfs = running_seaweedfs
    restarted = threading.Event()

    def restart_later() -> None:
        time.sleep(1.0)
        seaweedfs.start()
        restarted.set()

    view = S3View.of(seaweedfs.client(), s3_lake_env)
    hook = _stop_on_first_publish(seaweedfs, then=restart_later)
    results = []
    with proxied(seaweedfs, lambda *_: None, on_request=hook) as proxy:
        env = {"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "12"}
        for folder in history.folders:
            results.append(ingest(s3_lake_env, *csv_args(folder), env=env))
    assert restarted.wait(60)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    rows = compare(history.twin, change_rows(view))
    report.record(
        "SeaweedFS killed at the first publish, back 1 s later, run retries",
        runs=len(results),
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note="completed by botocore's retries",
    )
    assert rows.exact, rows


def test_server_killed_mid_run_without_proxy_then_rerun_converges(
    history: History, s3_lake_env: str, running_seaweedfs: Any, report: Recorder
) -> None:
    """The client talks to SeaweedFS directly (connection refused once it is gone); it is killed as soon as the
    first change file of the run appears."""
    seaweedfs = running_seaweedfs
    view = S3View.of(seaweedfs.client(max_attempts=1, timeout=2), s3_lake_env)
    v0, v1, v2 = history.folders
    assert ingest(s3_lake_env, *csv_args(v0)).returncode == 0
    before = set(view.list_keys("raw/"))
    stopped = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if set(view.list_keys("raw/")) - before:
                seaweedfs.stop(graceful=False)
                stopped.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    first = ingest(s3_lake_env, *csv_args(v1), env={"AWS_MAX_ATTEMPTS": "2"})
    watcher.join(timeout=60)
    if not seaweedfs.running:
        seaweedfs.start()
    assert first.returncode in (0, 4), first.stderr
    assert "Traceback" not in first.stderr
    for folder in (v1, v2):
        rerun = ingest(s3_lake_env, *csv_args(folder))
        assert rerun.returncode == 0, rerun.stderr
    assert_raw_complete(view)
    rows = compare(history.twin, change_rows(view))
    report.record(
        "SeaweedFS killed when the first change file appears (direct), rerun",
        runs=4,
        expected=rows.expected,
        lost=rows.lost,
        duplicated=rows.duplicated,
        note=f"interrupted run exited {first.returncode}",
    )
    assert rows.exact, rows


@pytest.mark.parametrize("moment", ["footer", "diff"])
def test_credentials_revoked_while_the_stored_snapshot_is_read_are_a_lake_error(
    moment: str, history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    """The access key stops working from the run's first read of a stored snapshot (DuckDB reads it in place
    through s3fs), at its footer (the snapshot's check) or in the diff: the server answers 403
    InvalidAccessKeyId to everything after. The run must fail as a lake error (exit 4) naming the object and the
    S3 error code, with no traceback, and leave the lake as it was."""
    assert ingest(s3_lake_env, *csv_args(history.folders[0])).returncode == 0
    view = S3View.of(seaweedfs.client(), s3_lake_env)
    before, before_rows = set(view.list_keys()), change_rows(view)
    revoked = threading.Event()
    reads: Counter[str] = Counter()

    def revoke(method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
        if method == "GET" and "/snapshots/" in path:
            reads[path] += 1
            # the first read of a snapshot checks its footer; the diff reads it again
            if moment == "footer" or reads[path] > 1:
                revoked.set()
        if not revoked.is_set():
            return headers
        return [
            (name, re.sub(r"Credential=[^/]+/", "Credential=AKIAREVOKED000000/", value))
            if name.lower() == "authorization"
            else (name, value)
            for name, value in headers
        ]

    with proxied(seaweedfs, lambda *_: None, rewrite=revoke) as proxy:
        failed = ingest(
            s3_lake_env, *csv_args(history.folders[1]), env={"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "2"}
        )
    errors = [line.split(": ", 1)[-1] for line in failed.stderr.splitlines() if " ERROR " in line]
    report.record(
        f"S3 credentials revoked while the stored snapshot is read ({moment})",
        runs=2,
        note=f"exit {failed.returncode}: {errors[-1][:80] if errors else '-'}",
    )
    assert revoked.is_set()
    assert failed.returncode == 4, failed.stderr
    assert "Traceback" not in failed.stderr
    assert len(errors) == 1, failed.stderr
    assert "InvalidAccessKeyId" in errors[0] and f"{s3_lake_env}/_ingestion/loyalty/" in errors[0], errors[0]
    assert "/snapshots/" in errors[0], errors[0]
    # the revoked key cannot release the lock either: its lease expires by itself (the run says so)
    assert set(view.list_keys()) - {LOCK_PATH.lstrip("/")} == before and change_rows(view) == before_rows


def test_a_corrupt_stored_snapshot_on_s3_stays_a_bad_snapshot(
    history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    """The other side of the credential test: S3 serves the stored snapshot fine, its bytes are not Parquet. That
    is exit 3 naming the object, not a lake error."""
    assert ingest(s3_lake_env, *csv_args(history.folders[0], "clientes")).returncode == 0
    view = S3View.of(seaweedfs.client(), s3_lake_env)
    (key,) = [k for k in view.list_keys("_ingestion/loyalty/clientes/snapshots/")]
    seaweedfs.client().put_object(Bucket=view.bucket, Key=f"{view.prefix}/{key}", Body=b"not parquet at all")
    failed = ingest(s3_lake_env, *csv_args(history.folders[1], "clientes"))
    errors = [line.split(": ", 1)[-1] for line in failed.stderr.splitlines() if " ERROR " in line]
    report.record("stored snapshot on S3 overwritten with non-Parquet bytes", runs=2, note=f"exit {failed.returncode}")
    assert failed.returncode == 3, failed.stderr
    assert len(errors) == 1 and f"{s3_lake_env}/{key} is not readable Parquet" in errors[0], errors
