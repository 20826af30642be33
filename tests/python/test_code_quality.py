"""The house rules, enforced where a contributor runs the tests: ruff, mypy and sqlfluff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed; install the test extras: pip install -e '.[test]'"
    return found


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",)],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_python_passes(command: tuple[str, ...]) -> None:
    result = run(tool(command[0]), *command[1:])
    assert result.returncode == 0, result.stdout + result.stderr


def test_sql_passes_sqlfluff_with_the_dbt_templater(tmp_path: Path) -> None:
    result = run(tool("sqlfluff"), "lint", "models", "macros", "tests/dbt", "--templater", "dbt")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
