"""The same captures against a real S3 server (SeaweedFS): same layout, same change set; an unreachable endpoint.

Crash-then-rerun and the lock on an S3 lake are the tests over `any_lake` of test_ingestion_capture.py."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.cli import ingest

from ingestion.lake import S3Lake

pytestmark = pytest.mark.s3

SCALE = ("--scale", "300")


def published(lake: S3Lake, tmp_path: Path) -> dict[str, list[dict[str, object]]]:
    rows: dict[str, list[dict[str, object]]] = {}
    tmp_path.mkdir(parents=True, exist_ok=True)
    for item in lake.list("raw/"):
        local = lake.download(item.key, tmp_path / item.key.replace("/", "_"))
        found = pq.read_table(local).to_pylist()
        for row in found:
            row.pop("_cdc_timestamp", None)  # capture times differ between two runs
            row.pop("_batch_id", None)
        rows["/".join(item.key.split("/")[:4])] = rows.get("/".join(item.key.split("/")[:4]), []) + found
    return rows


def test_s3_lake_gets_the_same_layout_and_changes_as_a_local_lake(s3_lake_env: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    for _ in range(2):
        assert ingest(str(local), *SCALE).returncode == 0
        result = ingest(s3_lake_env, *SCALE)
        assert result.returncode == 0, result.stderr

    lake = S3Lake(s3_lake_env)
    keys = [o.key for o in lake.list("raw/")]
    local_keys = sorted(p.relative_to(local).as_posix() for p in (local / "raw").rglob("*.parquet"))
    shape = sorted(k.rsplit("_", 3)[0] for k in keys)
    assert shape == sorted(k.rsplit("_", 3)[0] for k in local_keys)
    assert {k.split("/")[2] for k in keys} == {"full-load", "cdc", "events"}
    assert len(keys) == len(local_keys) == 4 * 2 + 3 * 2  # loyalty: full load + one change file; hotmart: 2 batches

    s3_rows = published(lake, tmp_path / "s3")
    for key, rows in s3_rows.items():
        local_rows = []
        for path in sorted((local / key).glob("*.parquet")):
            for row in pq.read_table(path).to_pylist():
                row.pop("_cdc_timestamp", None)
                row.pop("_batch_id", None)
                local_rows.append(row)
        assert sorted(rows, key=repr) == sorted(local_rows, key=repr), key
    assert any(r["_cdc_operation"] == "U" for r in s3_rows["raw/loyalty/cdc/clientes"])


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
        "AWS_SECRET_ACCESS_KEY": "a-secret-that-must-not-leak",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "2",
    }
    result = ingest("s3://lake/prefix", *SCALE, env=env)
    assert result.returncode == 4
    assert "s3://lake/prefix/_ingestion/" in result.stderr  # the first request names its object
    assert "a-secret-that-must-not-leak" not in result.stderr + result.stdout


def test_a_diff_reads_the_stored_snapshot_in_place_on_s3(
    s3_lake_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The previous snapshot is streamed by DuckDB through s3fs: no capture downloads it to local disk."""
    from ingestion.catalog import load_catalog
    from ingestion.cli import main

    assert main(["run", "--lake", s3_lake_env, "--source", "loyalty", *SCALE]) == 0

    def no_download(self: S3Lake, key: str, dest: Path) -> Path:
        raise AssertionError(f"downloaded {key}")

    monkeypatch.setattr(S3Lake, "download", no_download)
    assert main(["run", "--lake", s3_lake_env, "--source", "loyalty", *SCALE]) == 0
    lake = S3Lake(s3_lake_env)
    tables = load_catalog().source("loyalty").tables
    assert all(lake.list(f"raw/loyalty/cdc/{name}/") for name in ("clientes", "transacoes")), sorted(tables)
