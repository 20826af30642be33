"""The one way tests run ingestion: `python -m ingestion ...` in a subprocess, as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 300


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Any command of the CLI; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "ingestion", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ingest(
    lake: str | Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """`python -m ingestion run --lake LAKE ARGS...`."""
    return run_cli("run", "--lake", str(lake), *args, env=env, timeout=timeout)


def start_ingest(lake: str | Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """The same run, started in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "ingestion", "run", "--lake", str(lake), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
