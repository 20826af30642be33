"""The checks a command makes before it touches a lake, read from the error's fields (the CLI tests read the text
the user sees on stderr)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ingestion.cli import parse_interval
from ingestion.errors import LakeLocationError, LakeUriError, LockWaitError, OptionError, S3UriError, ScaleError
from ingestion.lake import LocalLake, open_lake
from ingestion.lock import LakeLock
from ingestion.readers.hotmart import HotmartSimulatorReader
from ingestion.readers.simulator import SimulatorReader


@pytest.mark.parametrize(("text", "value"), [("often", "often"), ("367d", "367d"), ("0s", None)])
def test_a_bad_interval_names_the_option_and_what_it_was_given(text: str, value: str | None) -> None:
    with pytest.raises(OptionError) as refused:
        parse_interval(text)
    # a zero interval is refused for its size, not its spelling: the message quotes no value
    assert (refused.value.option, refused.value.value, refused.value.exit_code) == ("--every", value, 2)


def test_a_lake_that_is_neither_a_folder_nor_s3_is_refused_by_its_uri(tmp_path: Path) -> None:
    with pytest.raises(LakeUriError) as refused:
        open_lake("gs://bucket/lake")
    assert (refused.value.uri, refused.value.exit_code) == ("gs://bucket/lake", 2)
    with pytest.raises(OptionError) as empty:
        open_lake("  ")
    assert empty.value.option == "--lake"
    with pytest.raises(S3UriError) as bucketless:
        open_lake("s3:///lake")
    assert (bucketless.value.uri, bucketless.value.exit_code) == ("s3:///lake", 4)


def test_a_lake_folder_that_is_a_file_or_absent_is_named(tmp_path: Path) -> None:
    file = tmp_path / "lake"
    file.write_text("not a folder")
    with pytest.raises(LakeLocationError) as refused:
        LocalLake(file)
    assert (refused.value.lake, refused.value.problem) == (str(file), "is a file, not a folder")
    with pytest.raises(LakeLocationError) as absent:
        LocalLake(tmp_path / "never", create=False)
    assert absent.value.lake == str(tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("wait", [-1.0, math.inf, math.nan])
def test_a_lock_wait_must_be_finite_and_not_negative(tmp_path: Path, wait: float) -> None:
    with pytest.raises(LockWaitError) as refused:
        LakeLock(LocalLake(tmp_path / "lake"), wait=wait)
    assert refused.value.wait == wait or (math.isnan(wait) and math.isnan(refused.value.wait))


def test_a_simulator_scale_below_its_minimum_is_refused_with_the_scale() -> None:
    with pytest.raises(ScaleError) as loyalty:
        SimulatorReader(scale=9)
    assert (loyalty.value.scale, loyalty.value.requirement) == (9, "at least 10 customers")
    with pytest.raises(ScaleError) as hotmart:
        HotmartSimulatorReader(scale=0)
    assert (hotmart.value.scale, hotmart.value.requirement) == (0, "positive")
