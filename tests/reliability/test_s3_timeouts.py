"""S3 endpoints that never answer, or are down: the run fails after a bounded number of attempts, naming the
endpoint, and logs every retry instead of staying silent. The elapsed time goes to the report (not asserted)."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from reliability_support import History, Recorder, csv_args, ingest

from ingestion.config import DEFAULT_MAX_ATTEMPTS

pytestmark = pytest.mark.slow

ENV = {
    "AWS_ACCESS_KEY_ID": "AKIATIMEOUTTEST",
    "AWS_SECRET_ACCESS_KEY": "timeout-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    # a silent endpoint costs every attempt its whole read timeout: the documented setting keeps it short here
    "LAGO_S3_READ_TIMEOUT": "2",
}


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """Accepts TCP connections and never sends a byte back."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.slow
def capture_against(
    endpoint: str, history: History, report: Recorder, scenario: str
) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str]]]:
    """A CSV capture into an S3 lake at `endpoint`: the result and the retries it logged, recorded as `scenario`."""
    started = time.monotonic()
    result = ingest("s3://lake/prefix", *csv_args(history.folders[0]), env={**ENV, "AWS_ENDPOINT_URL": endpoint})
    elapsed = time.monotonic() - started
    retries: list[tuple[str, str]] = re.findall(r"attempt (\d+) of (\d+) failed", result.stderr)
    note = f"exit {result.returncode} after {elapsed:.0f} s, {len(retries)} retries logged"
    report.record(scenario, runs=1, note=note)
    return result, retries


def test_an_endpoint_that_never_answers_fails_with_each_retry_logged(
    silent_endpoint: str, history: History, report: Recorder
) -> None:
    result, retries = capture_against(
        silent_endpoint, history, report, "S3 endpoint that accepts TCP and never answers"
    )
    assert result.returncode == 4, result.stderr
    assert silent_endpoint in result.stderr and "Read timeout" in result.stderr
    assert [int(n) for n, _ in retries] == list(range(1, DEFAULT_MAX_ATTEMPTS)), result.stderr
    assert "Traceback" not in result.stderr


def test_an_endpoint_that_is_down_fails_with_each_retry_logged(history: History, report: Recorder) -> None:
    result, retries = capture_against("http://127.0.0.1:9", history, report, "S3 endpoint down (connection refused)")
    assert result.returncode == 4, result.stderr
    assert "127.0.0.1:9" in result.stderr
    assert len(retries) == DEFAULT_MAX_ATTEMPTS - 1, result.stderr
