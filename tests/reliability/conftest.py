"""Reliability suite: the report every scenario adds a line to (the S3 server is the root conftest's).

Each scenario records what it measured (runs, rows expected, rows lost, rows duplicated); the outcome comes
from pytest itself. At the end of the session the table is printed and written to tests/reliability/report.md.
"""

from __future__ import annotations

from collections.abc import Generator
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


_REPORT_KEY = pytest.StashKey[ReliabilityReport]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORT_KEY] = ReliabilityReport()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.config.stash[_REPORT_KEY], request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    result: pytest.TestReport = yield
    outcomes = item.config.stash[_REPORT_KEY].outcomes
    if hasattr(result, "wasxfail"):
        outcomes[item.nodeid] = "xfail: known bug" if result.skipped else "XPASS (bug fixed? remove the xfail)"
    elif result.failed:
        outcomes[item.nodeid] = f"FAILED in {result.when}"
        report = item.config.stash[_REPORT_KEY]
        if _HERE in item.path.parents and not any(line.nodeid == item.nodeid for line in report.lines):
            # a scenario that failed before recording what it measured still gets its line
            report.lines.append(ReportLine(item.nodeid, item.name, 0, 0, 0, 0, "see the failure above"))
    elif result.skipped and item.nodeid not in outcomes:
        outcomes[item.nodeid] = "skipped"
    elif result.when == "call" and result.passed:
        outcomes[item.nodeid] = "ok"
    return result


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT_KEY, None)
    if report is None or not report.lines:
        return
    table = report.table()
    REPORT_PATH.write_text(
        "# Reliability report\n\nWritten by `pytest tests/reliability`; one line per scenario.\n\n" + table + "\n",
        encoding="utf-8",
    )
    terminalreporter.section("reliability report")
    terminalreporter.write_line(table)
    terminalreporter.write_line(f"(also written to {REPORT_PATH.relative_to(_HERE.parents[1])})")
