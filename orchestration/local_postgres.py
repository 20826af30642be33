"""A real Postgres on loopback: Debian's `postgresql-15` server binaries, a cluster in a folder of its own.

`python -m orchestration.local_postgres` starts one for a local source database with the loyalty tables created
from their declaration, and prints `export LAGO_POSTGRES_DSN=...`; `--background` leaves it running, `--stop` ends
it. The test suites start theirs through the same class, on a free port.

The server listens on 127.0.0.1 only (no Unix socket), with password authentication (SCRAM) over TCP, and with
`wal_level=logical` so the cluster can also serve logical replication. Postgres refuses to run as root: a root
caller runs initdb and the server as the `postgres` user (the Debian package creates it) and hands the cluster's
folder over to it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from ingestion.catalog import load_catalog
from ingestion.config import POSTGRES_BIN_ENV, POSTGRES_DSN_ENV, postgres_bin_dir
from ingestion.postgres.schema import create_table, relation_name
from orchestration.local_s3 import HOST, pick_ports, port_is_free, serve_until_stopped

# the unprivileged user a root caller runs the server as
SERVER_USER = "postgres"
SUPERUSER = "lago"


class PostgresError(RuntimeError):
    """The cluster could not be created, started or stopped; the message ends with the tail of its log."""


def _binary(name: str) -> str:
    path = postgres_bin_dir() / name
    if not path.is_file():
        raise PostgresError(
            f"{path} not found: install Postgres 15's server (Debian: apt-get install postgresql-15), or set "
            f"{POSTGRES_BIN_ENV} to the folder of its binaries"
        )
    return str(path)


def _server_user() -> str | None:
    """None when this process may run Postgres itself; else the unprivileged user to run it as."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresError(
            f"Postgres refuses to run as root and there is no {SERVER_USER!r} user to run it as: create one "
            "(the postgresql-15 package does) or run this as an unprivileged user"
        ) from None
    return SERVER_USER


class PostgresCluster:
    """One Postgres cluster: `workdir/data` (created by initdb on first start), its log `workdir/postgres.log`."""

    def __init__(
        self, workdir: Path, *, port: int | None = None, password: str | None = None, durable: bool = True
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "postgres.log"
        self.port = port
        # a fresh password by default: a test that connects proves it sends the right one
        self.password = password or secrets.token_urlsafe(18)
        # tests trade crash safety for speed (no fsync); a user's database keeps Postgres's defaults
        self.durable = durable
        self.user = _server_user()
        self._process: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str = "postgres", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{secret}@{HOST}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Create the cluster if it does not exist, then start the server and wait until it takes connections."""
        if self.running:
            raise PostgresError("Postgres is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.workdir)
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        if self.port is None:
            self.port = pick_ports(1)[0]
        self._spawn()
        self._wait_until_ready(timeout)

    def stop(self, *, graceful: bool = True, timeout: float = 30) -> None:
        """Stop the server: a fast shutdown, or `graceful=False` kills it at once (the next start recovers)."""
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGINT if graceful else signal.SIGKILL)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            # the server's own children (backends, background workers) end with it; a kill leaves them orphaned
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        finally:
            self._process = None

    def create_database(self, name: str) -> str:
        """A new database (or the existing one of that name); returns its connection string."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        return self.dsn(name)

    # -- internals -----------------------------------------------------------------------------------------

    def _run_as(self) -> dict[str, object]:
        return {} if self.user is None else {"user": self.user, "group": self.user}

    def _hand_over(self, folder: Path) -> None:
        """Give a root caller's folder to the server's user, and check that user can reach it."""
        if self.user is None:
            return
        shutil.chown(folder, self.user, self.user)
        for path in folder.rglob("*"):
            if not path.is_symlink():
                shutil.chown(path, self.user, self.user)
        reachable = subprocess.run(["test", "-w", str(folder)], check=False, **self._run_as())  # type: ignore[call-overload]
        if reachable.returncode != 0:
            raise PostgresError(
                f"the {self.user} user cannot reach {folder} (a parent folder is private): choose a folder it can "
                "traverse"
            )

    def _initdb(self) -> None:
        password_file = self.workdir / "initdb.password"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        password_file.chmod(0o600)
        self._hand_over(self.workdir)
        command = [
            _binary("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self.durable:
            command.append("--no-sync")
        try:
            with self.log_path.open("ab") as log:
                done = subprocess.run(  # type: ignore[call-overload]
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, check=False, **self._run_as()
                )
        finally:
            password_file.unlink(missing_ok=True)
        if done.returncode != 0:
            raise PostgresError(f"initdb exited with code {done.returncode}{self._log_tail()}")

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": HOST,
            "unix_socket_directories": "",
            "wal_level": "logical",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        command = [_binary("postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _spawn(self) -> None:
        command = self._command()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} {shlex.join(command)}\n".encode())
            log.flush()
            # a session of its own: a terminal's Ctrl-C does not reach it, and `stop` reaches its children
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._run_as(),
            )

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                code = None if self._process is None else self._process.poll()
                self._process = None
                raise PostgresError(f"postgres exited with code {code}{self._log_tail()}")
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.2)
        self.stop(graceful=False)
        raise PostgresError(f"Postgres did not answer within {timeout:.0f} s ({last_error}){self._log_tail()}")

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "\n(no log written)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- last {lines} lines of {self.log_path} ---\n{tail}"


def temporary_cluster() -> PostgresCluster:
    """A throw-away cluster (no fsync) in a new private temporary folder the server's user can reach; the caller
    stops it and removes `cluster.workdir`."""
    return PostgresCluster(Path(tempfile.mkdtemp(prefix="lago-pg-")), durable=False)


def create_source_tables(dsn: str, source: str = "loyalty") -> list[str]:
    """Create every declared table of `source` that the database lacks; returns their `schema.table` names."""
    tables = list(load_catalog().source(source).tables.values())
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in tables:
            create_table(conn, table)
    return [relation_name(t) for t in tables]


# -- `python -m orchestration.local_postgres`: a local source database in one command ------------------------------

DEFAULT_DIR = Path(".local-postgres")
DEFAULT_PORT = 5432
DEFAULT_DATABASE = "loyalty"
# a fixed password for a server that listens on loopback only: the exported DSN stays the same across restarts
LOCAL_PASSWORD = "lago-mago-local"


def _stop_background(folder: Path) -> int:
    """Stop the server of `folder` by its postmaster.pid (a fast shutdown: sessions end, data is kept)."""
    pid_file = folder / "data" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text(encoding="utf-8").splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        print(f"local_postgres: no server is running in {folder}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        print(f"local_postgres: the server (pid {pid}) had already stopped", file=sys.stderr)
        return 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        time.sleep(0.2)
    print(f"local_postgres: the server (pid {pid}) did not stop within 60 s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestration.local_postgres",
        description="Start Postgres on loopback with the loyalty tables and print the DSN to export.",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"cluster folder (default {DEFAULT_DIR})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help=f"database (default {DEFAULT_DATABASE})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--background", action="store_true", help="leave the server running and return")
    mode.add_argument("--stop", action="store_true", help="stop the server started with --background")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    if args.stop:
        return _stop_background(folder)
    if (folder / "data" / "postmaster.pid").exists():
        print(f"local_postgres: a server may be running already in {folder}; --stop it first", file=sys.stderr)
        return 1
    if not port_is_free(args.port):
        print(f"local_postgres: port {args.port} is taken; choose another with --port", file=sys.stderr)
        return 1
    cluster = PostgresCluster(folder, port=args.port, password=LOCAL_PASSWORD)
    try:
        cluster.start()
        dsn = cluster.create_database(args.database)
        tables = create_source_tables(dsn)
    except (PostgresError, psycopg.Error) as exc:
        cluster.stop(graceful=False)
        print(f"local_postgres: {exc}", file=sys.stderr)
        return 1
    # stdout carries only the export, so that `eval "$(python -m orchestration.local_postgres --background)"` works
    print(f"export {POSTGRES_DSN_ENV}={shlex.quote(dsn)}", flush=True)
    where = f"Postgres on {HOST}:{cluster.port}, database {args.database} ({', '.join(tables)}), data in {folder}"
    if args.background:
        print(f"local_postgres: {where}; stop it with --stop", file=sys.stderr)
        return 0
    print(f"local_postgres: {where}; Ctrl-C stops it", file=sys.stderr)
    if not serve_until_stopped("local_postgres", lambda: cluster.running, cluster.log_path):
        return 1
    cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
