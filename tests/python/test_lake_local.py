"""LocalLake: the lake contract on a folder, plus what only a folder can get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from lake_contract import LakeContract, write

from ingestion.errors import LakeKeyError
from ingestion.lake import STATE_PREFIX, LocalLake


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake")


class TestLocalLake(LakeContract):
    """The shared contract, on a local folder."""


def test_keys_cannot_escape_the_lake_root(lake: LocalLake, tmp_path: Path) -> None:
    with pytest.raises(LakeKeyError) as refused:
        lake.put_bytes("../outside.json", b"x")
    assert (refused.value.key, refused.value.exit_code) == ("../outside.json", 4)
    with pytest.raises(LakeKeyError) as refused:
        lake.publish(write(tmp_path / "f", b"x"), "a/../../outside.parquet")
    assert refused.value.key == "a/../../outside.parquet"
    assert not (tmp_path / "outside.json").exists()


def test_writes_leave_no_scratch_files(lake: LocalLake, tmp_path: Path) -> None:
    source = write(tmp_path / "f", b"x")
    lake.publish(source, "k/a.parquet")
    lake.publish(source, "k/a.parquet")
    lake.create_exclusive("k/lock", b"1")
    lake.create_exclusive("k/lock", b"2")
    lake.put_bytes("k/state.json", b"{}")

    assert list((lake.root / STATE_PREFIX / "tmp").iterdir()) == []


def test_a_published_file_is_independent_of_its_source(lake: LocalLake, tmp_path: Path) -> None:
    source = write(tmp_path / "f", b"original")
    lake.publish(source, "k/a.parquet")
    source.write_bytes(b"changed after publishing")

    assert lake.read_bytes("k/a.parquet") == b"original"


def test_uri_is_the_absolute_folder(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "nested" / "lake")
    assert lake.uri == str((tmp_path / "nested" / "lake").resolve())
    assert lake.root.is_dir()
