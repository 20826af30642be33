"""The one way tests run ingestion: `python -m ingestion ...` in a subprocess, as a user types it.

`env` holds changes to the test's own environment: a value sets a variable, None removes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 300

Env = Mapping[str, str | None]


def environment(changes: Env | None = None) -> dict[str, str]:
    """os.environ with `changes`: a value sets a variable, None removes it."""
    env = dict(os.environ)
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def command(*args: str) -> list[str]:
    """The command line of `python -m ingestion ARGS...` with this interpreter."""
    return [sys.executable, "-m", "ingestion", *args]


def run_cli(
    *args: str, env: Env | None = None, cwd: Path = ROOT, timeout: float = RUN_TIMEOUT, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Any command of the CLI. A non-zero exit is returned, or with `check` an AssertionError showing the end of
    stderr."""
    result = subprocess.run(
        command(*args), cwd=cwd, env=environment(env), capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert result.returncode == 0, (
            f"ingestion {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


def start_cli(
    *args: str,
    env: Env | None = None,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    new_session: bool = False,
) -> subprocess.Popen[str]:
    """Any command of the CLI, started in the background; its stderr is a pipe. With `new_session`, it leads its
    own process group, as a command in a terminal does (a Ctrl-C is `os.killpg(process.pid, SIGINT)`)."""
    return subprocess.Popen(
        command(*args),
        cwd=ROOT,
        env=environment(env),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def ingest(
    lake: str | Path, *args: str, env: Env | None = None, timeout: float = RUN_TIMEOUT, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m ingestion run --lake LAKE ARGS...`."""
    return run_cli("run", "--lake", str(lake), *args, env=env, timeout=timeout, check=check)


def start_ingest(lake: str | Path, *args: str, env: Env | None = None) -> subprocess.Popen[str]:
    """The same run, started in the background."""
    return start_cli("run", "--lake", str(lake), *args, env=env)


def csv_args(folder: Path, tables: str | None = None, source: str = "loyalty") -> list[str]:
    """The arguments of a capture of `source` from a folder of `<table>.csv` extracts: every table of the source,
    or `tables` (comma-separated)."""
    chosen = ["--tables", tables] if tables is not None else []
    return ["--source", source, "--from", "csv", "--path", str(folder), *chosen]
