"""Secrets: the AWS secret key and the Kaggle key never reach logs, error output or any file the project writes.

Each run uses a distinctive secret value, in debug mode (`-v`), and both succeeding and failing; then the secret
is searched for in stdout, stderr, every object of the lake, every file left in the run's temporary folder and
every file of the repository changed during the run.
"""

from __future__ import annotations

import importlib
import io
import logging
import secrets
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from reliability_support import ROOT, History, LakeView, LocalView, Recorder, S3View, csv_args, ingest
from support.dbt import Dbt

from ingestion import cli

DOWNLOAD_URL = "https://api.kaggle.com/v1/datasets.DatasetApiService/DownloadDataset"
SKIPPED_DIRS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", "node_modules"}


def _files_changed_since(root: Path, since: float) -> Iterator[Path]:
    for path in root.iterdir():
        if path.name in SKIPPED_DIRS:
            continue
        if path.is_dir() and not path.is_symlink():
            yield from _files_changed_since(path, since)
        elif path.is_file() and path.stat().st_mtime >= since:
            yield path


def find_secret(
    secret: str, *, texts: dict[str, str], views: list[LakeView], folders: list[Path], since: float
) -> list[str]:
    """Where `secret` appears: names of the texts, lake keys and files that hold it (empty when nowhere)."""
    needle = secret.encode()
    found = [name for name, text in texts.items() if secret in text]
    for view in views:
        found += [key for key in view.list_keys() if needle in (view.read(key) or b"")]
    for folder in folders:
        if folder.is_dir():
            found += [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]
    found += [str(p) for p in _files_changed_since(ROOT, since) if needle in p.read_bytes()]
    return found


@pytest.mark.s3
@pytest.mark.parametrize("case", ["succeeding", "wrong secret", "unreachable endpoint"])
def test_the_aws_secret_key_never_leaks(
    case: str, history: History, s3_lake_env: str, seaweedfs: Any, tmp_path: Path, report: Recorder
) -> None:
    started = time.time() - 1
    run_tmp = tmp_path / "run-tmp"
    run_tmp.mkdir()
    env = {"TMPDIR": str(run_tmp), "AWS_MAX_ATTEMPTS": "2"}
    if case == "succeeding":
        secret = seaweedfs.secret_key  # random, checked by the server: the run must really use it
    else:
        secret = "lagoSECRET" + secrets.token_hex(12)
        env["AWS_SECRET_ACCESS_KEY"] = secret
        if case == "unreachable endpoint":
            env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    results = [ingest(s3_lake_env, "-v", *csv_args(folder), env=env) for folder in history.folders[:2]]
    expected_code = 0 if case == "succeeding" else 4
    assert [r.returncode for r in results] == [expected_code] * 2, results[-1].stderr
    texts = {
        f"{stream} of run {n}": getattr(r, stream) for n, r in enumerate(results) for stream in ("stdout", "stderr")
    }
    found = find_secret(
        secret,
        texts=texts,
        views=[S3View.of(seaweedfs.client(), s3_lake_env)],
        folders=[run_tmp],
        since=started,
    )
    report.record(
        f"AWS secret key, {case} runs, debug logging", runs=len(results), note=f"found in {len(found)} place(s)"
    )
    assert not found, found


@pytest.fixture
def kaggle_mock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[responses.RequestsMock, str]]:
    """A distinctive Kaggle key in the environment, nothing of the developer's own setup, no real network."""
    home = tmp_path / "home"
    home.mkdir()
    key = "lagoKAGGLE" + secrets.token_hex(12)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT", "KAGGLE_KERNEL_RUN_TYPE", "VERBOSE", "VERBOSE_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "lago-secret-tester")
    monkeypatch.setenv("KAGGLE_KEY", key)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "run-tmp"))
    (tmp_path / "run-tmp").mkdir()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        extended = importlib.import_module("kaggle.api.kaggle_api_extended")
        monkeypatch.setattr(extended.KaggleApi, "config", str(home / ".kaggle" / "kaggle.json"))
        yield mock, key


def _dataset_zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for csv in sorted(folder.glob("*.csv")):
            archive.writestr(csv.name, csv.read_bytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    "answer", ["succeeding", "401 echoing the key", "500 echoing the key", "connection error echoing the key"]
)
def test_the_kaggle_key_never_leaks(
    answer: str,
    history: History,
    kaggle_mock: tuple[responses.RequestsMock, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    report: Recorder,
) -> None:
    """The real `kaggle` client through the real CLI (in-process: its one HTTP call is answered by `responses`)."""
    mock, key = kaggle_mock
    started = time.time() - 1
    if answer == "succeeding":
        mock.add(responses.POST, DOWNLOAD_URL, body=_dataset_zip(history.folders[0]), content_type="application/zip")
    elif answer.startswith("connection error"):
        mock.add(responses.POST, DOWNLOAD_URL, body=ConnectionError(f"cannot reach kaggle with key {key}"))
    else:
        status = int(answer[:3])
        mock.add(responses.POST, DOWNLOAD_URL, json={"code": status, "message": f"key {key} refused"}, status=status)
    caplog.set_level(logging.DEBUG)
    lake = tmp_path / "lake"
    code = cli.main(["run", "-v", "--lake", str(lake), "--from", "kaggle", "--tables", "clientes,produtos"])
    assert code == (0 if answer == "succeeding" else 3), caplog.text
    out, err = capsys.readouterr()
    found = find_secret(
        key,
        texts={"stdout": out, "stderr": err, "log": caplog.text},
        views=[LocalView(lake)],
        folders=[tmp_path / "run-tmp", tmp_path / "home"],
        since=started,
    )
    assert find_secret(
        "teocalvo/teomewhy-loyalty-system", texts={"log": caplog.text}, views=[], folders=[], since=time.time()
    )
    report.record(f"Kaggle key, {answer}, debug logging", runs=1, note=f"exit {code}, found in {len(found)} place(s)")
    assert not found, found


@pytest.mark.s3
@pytest.mark.dbt
def test_no_dbt_command_prints_the_aws_secret_key(
    history: History, s3_lake_env: str, seaweedfs: Any, tmp_path: Path, report: Recorder
) -> None:
    """`dbt debug` prints the profile, and every command logs it to logs/dbt.log: no secret may be in it."""
    assert ingest(s3_lake_env, *csv_args(history.folders[0])).returncode == 0
    started = time.time() - 1
    secret = seaweedfs.secret_key  # the server checks it: the build below proves dbt really used it
    site = Dbt.at(tmp_path, s3_lake_env, env={"DBT_LOG_LEVEL_FILE": "debug"})  # every statement and the profile
    texts: dict[str, str] = {}
    for command in (["debug"], ["build", "--select", "+bronze_loyalty__clientes"]):
        result = site(*command, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:]
        texts[f"dbt {command[0]} stdout"] = result.stdout
        texts[f"dbt {command[0]} stderr"] = result.stderr
    found = find_secret(secret, texts=texts, views=[], folders=[site.target_path, site.log_path], since=started)
    report.record(
        "AWS secret key, dbt debug and dbt build on an S3 lake", runs=2, note=f"found in {len(found)} place(s)"
    )
    assert not found, found
