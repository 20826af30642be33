"""S3Lake against a real S3 server (SeaweedFS): the lake contract, plus what only S3 can get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from lake_contract import LakeContract, write
from s3server import SeaweedFS

from ingestion.errors import OverwriteRefusedError, S3RequestError
from ingestion.lake import S3Lake, open_lake

pytestmark = pytest.mark.s3


@pytest.fixture
def lake(s3_lake_env: str) -> S3Lake:
    return S3Lake(s3_lake_env)


class TestS3Lake(LakeContract):
    pass


def test_open_lake_returns_an_s3_lake_with_a_normalised_uri(s3_lake_env: str) -> None:
    lake = open_lake(s3_lake_env + "/")
    assert isinstance(lake, S3Lake)
    assert lake.uri == s3_lake_env
    assert lake.prefix == "lake"


def test_keys_live_under_the_lake_prefix(lake: S3Lake, seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    client = seaweedfs.client()
    # Neighbours that share the bucket, or the first letters of the prefix, are not part of the lake.
    client.put_object(Bucket=lake.bucket, Key="other/x.parquet", Body=b"x")
    client.put_object(Bucket=lake.bucket, Key="lakehouse/y.parquet", Body=b"y")
    lake.publish(write(tmp_path / "f", b"data"), "cdc/a.parquet")

    stored = sorted(o["Key"] for o in client.list_objects_v2(Bucket=lake.bucket)["Contents"])

    assert stored == ["lake/cdc/a.parquet", "lakehouse/y.parquet", "other/x.parquet"]
    assert [o.key for o in lake.list("")] == ["cdc/a.parquet"]
    assert lake.uri_for("cdc/a.parquet") == f"s3://{lake.bucket}/lake/cdc/a.parquet"


def test_a_lake_at_the_bucket_root(seaweedfs: SeaweedFS, s3_lake_env: str, tmp_path: Path) -> None:
    lake = S3Lake(f"s3://{seaweedfs.create_bucket('root')}")

    assert lake.publish(write(tmp_path / "f", b"data"), "cdc/a.parquet") is True

    assert lake.prefix == ""
    assert [o.key for o in lake.list("")] == ["cdc/a.parquet"]
    assert lake.read_bytes("cdc/a.parquet") == b"data"


def test_publish_sends_a_conditional_put(lake: S3Lake, seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    """The write-once guarantee is the server's (412 on If-None-Match), not a check-then-write in Python."""
    client = seaweedfs.client()
    client.put_object(Bucket=lake.bucket, Key="lake/k/a.parquet", Body=b"written by someone else")
    sent: list[object] = []
    lake.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(request.headers.get("If-None-Match"))
    )

    with pytest.raises(OverwriteRefusedError) as refused:
        lake.publish(write(tmp_path / "f", b"mine"), "k/a.parquet")
    assert refused.value.uri == f"{lake.uri}/k/a.parquet"

    assert sent == [b"*"]


def test_a_missing_bucket_is_an_error_not_an_empty_lake(s3_lake_env: str) -> None:
    lake = S3Lake("s3://no-such-bucket-lago-mago/lake")

    with pytest.raises(S3RequestError) as refused:
        lake.read_bytes("_ingestion/state.json")
    assert (refused.value.action, refused.value.target, refused.value.code) == (
        "read",
        "s3://no-such-bucket-lago-mago/lake/_ingestion/state.json",
        "NoSuchBucket",
    )
    with pytest.raises(S3RequestError) as refused:
        lake.list("cdc/")
    assert (refused.value.action, refused.value.code, refused.value.exit_code) == ("list", "NoSuchBucket", 4)


def test_wrong_credentials_are_a_lake_error_without_the_secret(
    s3_lake_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-do-not-print-me")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    lake = S3Lake(s3_lake_env)

    with pytest.raises(S3RequestError) as caught:
        lake.put_bytes("_ingestion/state.json", b"{}")

    assert (caught.value.action, caught.value.code) == ("write", "SignatureDoesNotMatch")
    assert "wrong-secret-do-not-print-me" not in str(caught.value)


def test_server_down_is_a_lake_error_and_data_survives_a_restart(
    seaweedfs: SeaweedFS, s3_lake_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    lake = S3Lake(s3_lake_env)
    lake.publish(write(tmp_path / "f", b"before the outage"), "cdc/a.parquet")
    endpoint = seaweedfs.endpoint_url

    seaweedfs.stop(graceful=False)
    try:
        with pytest.raises(S3RequestError) as caught:
            lake.read_bytes("cdc/a.parquet")
        # no answer came: a connection error carries no S3 error code
        assert (caught.value.action, caught.value.target, caught.value.code) == (
            "read",
            lake.uri_for("cdc/a.parquet"),
            None,
        )
        assert caught.value.detail.startswith("Could not connect to the endpoint URL")
    finally:
        seaweedfs.start()

    assert seaweedfs.endpoint_url == endpoint
    assert S3Lake(s3_lake_env).read_bytes("cdc/a.parquet") == b"before the outage"
    assert lake.publish(write(tmp_path / "f", b"before the outage"), "cdc/a.parquet") is False
