"""The lake's identity file `_ingestion/lake.json`: written once at the first capture, never changed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.cli import csv_args, ingest

from ingestion.errors import IdentityError
from ingestion.identity import IDENTITY_KEY, ensure_identity, read_identity
from ingestion.lake import Lake, LocalLake, S3Lake

# a small capture of one source
SMALL = ("--scale", "100", "--source", "loyalty")


def open_any(uri: str) -> Lake:
    return S3Lake(uri) if uri.startswith("s3://") else LocalLake(Path(uri))


def check_identity(raw: bytes) -> dict[str, str]:
    body = json.loads(raw)
    assert set(body) == {"lake_id", "created_at"}
    assert uuid.UUID(hex=body["lake_id"]).version == 4 and len(body["lake_id"]) == 32
    created = datetime.fromisoformat(body["created_at"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - created).total_seconds()) < 600
    return dict(body)


def test_first_capture_writes_the_identity_and_later_runs_keep_it(any_lake: str) -> None:
    lake = open_any(any_lake)
    assert ingest(any_lake, *SMALL).returncode == 0
    first = lake.read_bytes(IDENTITY_KEY)
    assert first is not None
    check_identity(first)
    assert ingest(any_lake, *SMALL).returncode == 0
    assert lake.read_bytes(IDENTITY_KEY) == first
    # write-once: a second create is refused (hard link locally, the server's conditional PUT on S3)
    assert not lake.create_exclusive(IDENTITY_KEY, b"{}")


def test_an_existing_lake_without_identity_gets_one_at_its_next_run(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert ingest(lake, *SMALL).returncode == 0
    (lake / IDENTITY_KEY).unlink()
    result = ingest(lake, *SMALL)
    assert result.returncode == 0, result.stderr
    check_identity((lake / IDENTITY_KEY).read_bytes())


def test_a_refused_first_run_writes_no_identity(tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "clientes.csv").write_text("idCliente;flEmail\n", encoding="utf-8")
    lake = tmp_path / "lake"
    result = ingest(lake, *SMALL, *csv_args(folder, "clientes"))
    assert result.returncode == 3
    assert not (lake / IDENTITY_KEY).exists()


def test_identity_is_write_once_and_a_corrupt_one_is_refused(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    first = ensure_identity(lake)
    assert ensure_identity(lake) == first == read_identity(lake)
    (tmp_path / "lake" / IDENTITY_KEY).write_text("{}")
    with pytest.raises(IdentityError) as refused:
        ensure_identity(lake)
    assert (refused.value.file, refused.value.exit_code) == (lake.uri_for(IDENTITY_KEY), 4)
