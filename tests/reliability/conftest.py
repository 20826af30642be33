"""Reliability suite: the report every scenario adds a line to (the S3 server is the root conftest's).

Each scenario records what it measured (runs, rows expected, rows lost, rows duplicated); the outcome comes
from pytest itself. At the end of the session the table is printed and written to tests/reliability/report.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import (
    History,
    LakeView,
    LocalView,
    Recorder,
    ReliabilityReport,
    ReportLine,
    S3View,
    change_rows,
    csv_args,
    ingest,
    report_lines,
    write_history,
)
from support.dbt import Dbt

_HERE = Path(__file__).resolve().parent
REPORT_PATH = _HERE / "report.md"


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    base = tmp_path_factory.mktemp("history")
    folders = write_history(base / "source", versions=3)
    twin = base / "twin"
    for folder in folders:
        result = ingest(twin, *csv_args(folder))
        assert result.returncode == 0, result.stderr
    rows = change_rows(LocalView(twin))
    assert {row[2] for row in rows} == {"I", "U", "D"}
    return History(folders, rows, twin)


@pytest.fixture
def lake_view(any_lake: str, request: pytest.FixtureRequest) -> LakeView:
    """`any_lake` read-only; on S3 with the test server's own client, never with the configuration under test."""
    if any_lake.startswith("s3://"):
        return S3View.of(request.getfixturevalue("seaweedfs").client(), any_lake)
    return LocalView(Path(any_lake))


@pytest.fixture(scope="session")
def dbt_site(tmp_path_factory: pytest.TempPathFactory) -> Dbt:
    """The repository's dbt project on one target folder for the whole suite (one full parse, then partial ones);
    each scenario `point_at`s its own lake."""
    return Dbt.at(tmp_path_factory.mktemp("dbt"))


# The session's report (one per process: with parallel workers, the lines reach the one that writes it)
_REPORT = ReliabilityReport()
# this suite's node ids begin with it
_NODEID_PREFIX = f"{_HERE.relative_to(_HERE.parents[1]).as_posix()}/"


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.node.user_properties, request.node.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Gathers the lines and outcomes from every test's reports: in the process that ran the test, or, with
    parallel workers, in the one that receives their reports (only that one writes the report)."""
    if not report.nodeid.startswith(_NODEID_PREFIX):
        return
    outcomes = _REPORT.outcomes
    if hasattr(report, "wasxfail"):
        outcomes[report.nodeid] = "xfail: known bug" if report.skipped else "XPASS (bug fixed? remove the xfail)"
    elif report.failed:
        outcomes[report.nodeid] = f"FAILED in {report.when}"
    elif report.skipped and report.nodeid not in outcomes:
        outcomes[report.nodeid] = "skipped"
    elif report.when == "call" and report.passed:
        outcomes[report.nodeid] = "ok"
    if report.when != "teardown":
        return  # every phase carries the test's properties; the last one carries them all
    lines = report_lines(report.user_properties)
    if not lines and outcomes.get(report.nodeid, "").startswith("FAILED"):
        # a scenario that failed before recording what it measured still gets its line
        lines = [ReportLine(report.nodeid, report.nodeid.rsplit("::", 1)[-1], 0, 0, 0, 0, "see the failure above")]
    _REPORT.lines.extend(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not _REPORT.lines or hasattr(config, "workerinput"):
        return
    table = _REPORT.table()
    REPORT_PATH.write_text(
        "# Reliability report\n\nWritten by `pytest tests/reliability`; one line per scenario.\n\n" + table + "\n",
        encoding="utf-8",
    )
    terminalreporter.section("reliability report")
    terminalreporter.write_line(table)
    terminalreporter.write_line(f"(also written to {REPORT_PATH.relative_to(_HERE.parents[1])})")
