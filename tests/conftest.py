"""Shared by every suite: the test tiers, the real S3 server (SeaweedFS) started once per session, and a lake
that is a local folder or an S3 prefix by parameter (`any_lake`), so one test covers both.

Tiers: `pytest` runs everything; `pytest -m "not slow and not spark and not docs"` is the quick tier.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# the S3 server helper lives beside the suites that started it; both suites import it by module name
sys.path.insert(0, str(Path(__file__).resolve().parent / "python"))

# the session's Postgres (`postgres_server`) is a fixture of its helper's module, registered by this import
from pgserver import postgres_server  # noqa: F401
from s3server import REGION, SeaweedFS

from ingestion.dbt_packages import ensure_installed

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the tiers are markers declared in pyproject.toml and set by each file's `pytestmark` or a test's decorator;
    # one rule is applied here: every dbt build costs its parse and its run
    for item in items:
        if item.get_closest_marker("dbt") is not None:
            item.add_marker("slow")
    # Longest first: parallel workers take whole files in this order, so the Spark and dbt files start at once and
    # the short ones fill in around them instead of one long file running alone at the end.
    rank: dict[Path, int] = {}
    for item in items:
        kind = 0 if item.get_closest_marker("spark") else 1 if item.get_closest_marker("slow") else 2
        rank[item.path] = min(rank.get(item.path, kind), kind)
    items.sort(key=lambda item: rank[item.path])


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject.toml): one worker more than the cores. Part of a worker's time goes to waiting rather
    than computing (a server or a JVM starting, a retry's back-off, a page loading): the extra worker computes then."""
    return (os.cpu_count() or 1) + 1


@pytest.fixture(scope="session", autouse=True)
def _dbt_packages() -> None:
    """The project's local dbt packages (the CDC engine) installed once, as a clone's first `dbt deps` does: every
    dbt command of the suite on this checkout needs them (parallel workers take turns on a lock)."""
    ensure_installed(ROOT)


@pytest.fixture(autouse=True)
def _signals_as_in_a_terminal() -> None:
    """Ctrl-C and SIGTERM handled by default in the commands the tests start, as in a terminal: an ignored signal
    is inherited by every child, and some tests stop their commands with one. pytest started in the background by
    a script ignores SIGINT (as every background job of a non-interactive shell does), and a library may leave
    SIGTERM ignored; `bash` could not even trap them back."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3 server (SeaweedFS) on free loopback ports, for the whole session.

    Tests that stop it (`seaweedfs.stop()` / `restart()`) must leave it running again. At the end of the session
    it is killed, not stopped gracefully (about 10 s saved).
    """
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop(graceful=False)
        server.close()


@pytest.fixture
def s3_lake_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point boto3's standard configuration at the test server; the value is a lake URI in a fresh bucket."""
    if not seaweedfs.running:
        seaweedfs.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Nothing from the developer's own AWS setup may leak in.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return f"s3://{seaweedfs.create_bucket('lake')}/lake"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A lake URI: a local folder, or a prefix on the session's S3 server (with the environment pointed at it)."""
    if request.param == "s3":
        return str(request.getfixturevalue("s3_lake_env"))
    return str(tmp_path / "lake")
