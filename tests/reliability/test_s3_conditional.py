"""An S3 server that ignores conditional writes (`If-None-Match`, `If-Match`) would silently void the lock and
write-once publishing. A run checks the server first and refuses it, naming the endpoint; `--single-writer` is
the explicit opt-out for a lake with one writer by construction.

The server here is SeaweedFS behind a proxy that strips the conditions and signs the request again, so
SeaweedFS sees plain PUTs: what a server without conditional writes does with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fault_proxy import FaultProxy
from reliability_support import History, Recorder, S3View, csv_args, fingerprint, start_ingest
from s3server import REGION

pytestmark = pytest.mark.s3

CONDITIONS = {"if-none-match", "if-match"}
SIGNING = {"authorization", "x-amz-date", "x-amz-security-token"}


@contextmanager
def ignoring_conditions(seaweedfs: Any) -> Iterator[FaultProxy]:
    credentials = Credentials(seaweedfs.access_key, seaweedfs.secret_key)
    stripped: list[str] = []

    def strip(method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
        if not any(name.lower() in CONDITIONS for name, _ in headers):
            return headers
        stripped.append(f"{method} {path}")
        kept = [(name, value) for name, value in headers if name.lower() not in CONDITIONS | SIGNING]
        # sign only what the proxy forwards verbatim (it rewrites Content-Length, drops hop-by-hop headers)
        signed = {n: v for n, v in kept if n.lower() == "host" or n.lower().startswith(("x-amz-", "content-md5"))}
        unsigned = [(n, v) for n, v in kept if n not in signed]
        request = AWSRequest(method=method, url=f"http://{signed['Host']}{path}", headers=signed, data=body)
        S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
        return [*request.headers.items(), *unsigned]

    with FaultProxy(seaweedfs.endpoint_url, rewrite=strip, lifetime=120) as proxy:
        proxy.stripped = stripped  # type: ignore[attr-defined]
        yield proxy


def test_a_server_ignoring_conditional_writes_is_refused_by_every_run(
    history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    view = S3View.of(seaweedfs.client(), s3_lake_env)
    before = fingerprint(view)
    with ignoring_conditions(seaweedfs) as proxy:
        runs = [start_ingest(s3_lake_env, *csv_args(history.folders[0]), env={"AWS_ENDPOINT_URL": proxy.url})]
        runs += [start_ingest(s3_lake_env, *csv_args(history.folders[0]), env={"AWS_ENDPOINT_URL": proxy.url})]
        runs += [start_ingest(s3_lake_env, *csv_args(history.folders[0]), env={"AWS_ENDPOINT_URL": proxy.url})]
        outcomes = [(run.wait(timeout=120), run.communicate()[1]) for run in runs]
        assert proxy.stripped, "the proxy stripped nothing: the test proves nothing"  # type: ignore[attr-defined]
    codes = sorted(code for code, _ in outcomes)
    report.record(
        "three runs at once on an S3 server that ignores If-None-Match",
        runs=3,
        note=f"exit codes {codes}; nothing published",
    )
    assert codes == [4, 4, 4], outcomes
    for _, err in outcomes:
        assert "ignores conditional writes" in err and proxy.url in err and "--single-writer" in err
        assert "Traceback" not in err
    assert fingerprint(view) == before


def test_single_writer_opts_out_of_the_check(
    history: History, s3_lake_env: str, seaweedfs: Any, report: Recorder
) -> None:
    view = S3View.of(seaweedfs.client(), s3_lake_env)
    with ignoring_conditions(seaweedfs) as proxy:
        run = start_ingest(
            s3_lake_env, *csv_args(history.folders[0]), "--single-writer", env={"AWS_ENDPOINT_URL": proxy.url}
        )
        _, err = run.communicate(timeout=120)
    report.record("--single-writer on a server that ignores If-None-Match", runs=1, note=f"exit {run.returncode}")
    assert run.returncode == 0, err
    assert [k for k in view.list_keys("raw/") if "/full-load/" in k]
