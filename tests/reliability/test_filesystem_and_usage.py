"""The local filesystem failing under a run, and command lines that cannot mean what they say: each is a clear
error with its exit code (4 for storage, 2 for usage), never a traceback, and never a lake written somewhere else.

Read-only and full filesystems are real: a tmpfs mounted in a private mount namespace (`unshare -m`), visible
only to the run under test.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from reliability_support import ROOT, History, Recorder, csv_args, ingest
from support.cli import command as cli_command
from support.cli import run_cli as cli


@pytest.fixture(scope="module")
def mount_namespace(tmp_path_factory: pytest.TempPathFactory) -> None:
    probe = tmp_path_factory.mktemp("mount-probe")
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(probe))}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"mount namespaces are not available here (needs root): {result.stderr.strip()}")


def in_tmpfs(mountpoint: Path, options: str, args: list[str], env: dict[str, str] | None = None) -> str:
    """Run the CLI with a fresh tmpfs on `mountpoint`; returns the exit code and stderr as one text."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in cli_command(*args))
    script = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mountpoint))} && {command}; echo EXIT=$?"
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )
    return result.stdout + result.stderr


def _check(output: str, code: int, *says: str) -> None:
    assert f"EXIT={code}" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for text in says:
        assert text in output, output[-3000:]


@pytest.mark.usefixtures("mount_namespace")
@pytest.mark.parametrize(
    ("case", "options", "says"),
    [
        ("read-only lake filesystem", "ro", "Read-only file system (EROFS)"),
        ("lake filesystem full", "size=64k", "No space left on device (ENOSPC)"),
    ],
)
def test_the_lake_filesystem_failing_is_exit_4(
    case: str, options: str, says: str, tmp_path: Path, report: Recorder
) -> None:
    lake = tmp_path / "mnt" / "lake"
    output = in_tmpfs(tmp_path / "mnt", options, ["run", "--lake", str(lake), "--source", "loyalty", "--scale", "3000"])
    report.record(case, runs=1, note=f"{says}, exit 4")
    _check(output, 4, says)


@pytest.mark.usefixtures("mount_namespace")
def test_a_full_tmpdir_is_exit_4(tmp_path: Path, report: Recorder) -> None:
    work = tmp_path / "work"
    output = in_tmpfs(
        work,
        "size=64k",
        ["run", "--lake", str(tmp_path / "lake"), "--source", "loyalty", "--scale", "3000"],
        env={"TMPDIR": str(work)},
    )
    report.record("TMPDIR full", runs=1, note="exit 4")
    _check(output, 4)
    assert "filesystem error" in output or "work folder failed" in output or "No space left" in output
    assert not list((tmp_path / "lake").glob("raw/**/*.parquet"))


def test_an_immutable_raw_folder_is_exit_4(history: History, tmp_path: Path, report: Recorder) -> None:
    lake = tmp_path / "lake"
    (lake / "raw").mkdir(parents=True)
    locked = subprocess.run(["chattr", "+i", str(lake / "raw")], capture_output=True, text=True)
    if locked.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {locked.stderr.strip()}")
    try:
        result = ingest(lake, *csv_args(history.folders[0]))
    finally:
        subprocess.run(["chattr", "-i", str(lake / "raw")], check=True)
    report.record("raw/ not writable (EPERM)", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and "(EPERM)" in result.stderr


@pytest.mark.parametrize("which", ["lake", "raw"])
def test_a_file_where_a_folder_belongs_is_exit_4(
    which: str, history: History, tmp_path: Path, report: Recorder
) -> None:
    lake = tmp_path / "lake"
    if which == "lake":
        lake.write_text("not a folder")
    else:
        lake.mkdir()
        (lake / "raw").write_text("not a folder")
    result = ingest(lake, *csv_args(history.folders[0]))
    report.record(
        f"--lake {'is' if which == 'lake' else 'has raw/ as'} a file", runs=1, note=f"exit {result.returncode}"
    )
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and str(lake) in result.stderr


@pytest.mark.parametrize("lake", ["/proc/x", "/sys/lago-lake"])
def test_a_lake_that_cannot_be_created_is_exit_4(lake: str, history: History, report: Recorder) -> None:
    result = ingest(lake, *csv_args(history.folders[0]))
    report.record(f"--lake {lake}", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and lake in result.stderr


@pytest.mark.parametrize("lake", ["s3:/bucket/prefix", "S3://bucket", "gs://bucket/lake", ""])
def test_a_lake_uri_that_is_no_folder_or_s3_is_a_usage_error(
    lake: str, history: History, tmp_path: Path, report: Recorder
) -> None:
    result = cli("run", "--lake", lake, *csv_args(history.folders[0]), cwd=tmp_path)
    report.record(f"--lake {lake!r}", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "a local folder was created for a URI"


def test_a_table_named_twice_is_a_usage_error(history: History, tmp_path: Path, report: Recorder) -> None:
    lake = tmp_path / "lake"
    result = ingest(lake, *csv_args(history.folders[0], tables="clientes,clientes"))
    report.record("--tables clientes,clientes", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 2, result.stderr
    assert "clientes more than once" in result.stderr
    assert not (lake / "raw").exists()


def test_a_missing_csv_folder_is_a_usage_error(tmp_path: Path, report: Recorder) -> None:
    result = ingest(tmp_path / "lake", "--source", "loyalty", "--from", "csv", "--path", str(tmp_path / "nowhere"))
    report.record("--path to a folder that does not exist", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 2, result.stderr
    assert "nowhere" in result.stderr and "no such folder" in result.stderr


def test_status_of_a_mistyped_lake_is_an_error_and_creates_nothing(tmp_path: Path, report: Recorder) -> None:
    result = cli("status", "--lake", str(tmp_path / "lkae"))
    report.record("status of a lake folder that does not exist", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 4, result.stderr
    assert "does not exist" in result.stderr
    assert not (tmp_path / "lkae").exists()


def test_status_shows_times_sequences_and_event_counts(tmp_path: Path, report: Recorder) -> None:
    lake = tmp_path / "lake"
    for _ in range(2):
        assert cli("run", "--lake", str(lake), "--scale", "100").returncode == 0
    assert cli("run", "--lake", str(lake), "--scale", "100", "--source", "loyalty").returncode == 0
    result = cli("status", "--lake", str(lake))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line.startswith("lake")}
    # produtos changes rarely, so its last capture may be unchanged: then no sequence range may be shown
    for name in ("clientes", "produtos", "transacoes", "purchase"):
        assert name in lines, result.stdout
        fields = lines[name].split()
        assert fields[1].count("-") == 2 and fields[2].count(":") == 2, lines[name]  # a date and a time
    header = next(line for line in result.stdout.splitlines() if "hotmart" in line)
    events_header = result.stdout.split(header, 1)[1].splitlines()[1]
    assert "new events" in events_header and " U " not in events_header
    assert not any(
        (parts := line.split()) and ".." in parts[-1] and int(parts[-1].split("..")[1]) < int(parts[-1].split("..")[0])
        for line in result.stdout.splitlines()
    ), result.stdout
    report.record("status: times, sequence ranges, event counts", runs=4, note="no 7..6 ranges, no ids as times")


@pytest.mark.parametrize("every", ["9999999999d", "0s", "often"])
def test_schedule_refuses_an_impossible_period(every: str, tmp_path: Path, report: Recorder) -> None:
    result = cli("schedule", "--every", every, "--lake", str(tmp_path / "lake"))
    report.record(f"schedule --every {every}", runs=1, note=f"exit {result.returncode}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "--every" in result.stderr
