"""Every `dbt show` command of README.md, and every `python -c` reader of its tables, run as it is written after
the quick start (its warehouse, and the tables its build published into the lake).

The commands are read from the README, so the test follows it: a new or changed one is tested as it stands.
"""

from __future__ import annotations

import re
import shlex

import pytest
from support.readme import README, QuickStart

pytestmark = [pytest.mark.dbt, pytest.mark.slow]


def readme_commands(start: str) -> list[str]:
    """The inline-code spans of README.md that are a command starting with `start` (the bare name, in prose, is
    not a command)."""
    spans = re.findall(r"`([^`\n]+)`", README.read_text(encoding="utf-8"))
    return [span for span in spans if span.startswith(start)]


def readme_dbt_shows() -> list[str]:
    return readme_commands("dbt show ")


def test_the_readme_has_dbt_show_commands() -> None:
    shows = readme_dbt_shows()
    assert len(shows) >= 2, shows
    assert any("--inline" in show for show in shows), shows
    assert any("--target lake" in show for show in shows), shows


@pytest.mark.parametrize("command", readme_dbt_shows())
def test_a_readme_dbt_show_runs_as_written(quick_start: QuickStart, command: str) -> None:
    shown = quick_start.bash(command, timeout=600)
    output = shown.stdout + shown.stderr
    assert shown.returncode == 0, f"{command}\n{output[-4000:]}"
    # dbt prints a table: a header, a separator and one line per row (the quick start's marts have rows)
    table = [line for line in shown.stdout.splitlines() if line.lstrip().startswith("|")]
    rows = len(table) - 2
    assert rows >= 1, output[-4000:]
    words = shlex.split(command)
    if "--limit" in words:
        assert rows == int(words[words.index("--limit") + 1]), table


@pytest.mark.parametrize("command", readme_commands("python -c "))
def test_a_readme_python_reader_runs_as_written(quick_start: QuickStart, command: str) -> None:
    shown = quick_start.bash(command, timeout=600)
    output = shown.stdout + shown.stderr
    assert shown.returncode == 0, f"{command}\n{output[-4000:]}"
    # DuckDB prints a box: the column names, their types, then one line per row
    rows = len([line for line in shown.stdout.splitlines() if line.startswith("│")]) - 2
    assert rows >= 1, output[-4000:]
