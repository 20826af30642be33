"""The scheduler's dbt, kept running between builds.

A `dbt build` started as a new command pays dbt's start-up every time: importing dbt and its adapter, then a
partial parse of the project (about 4 CPU-s here, more than a third of an incremental build of 100,000 customers
on DuckDB). The worker is one process that imports dbt once, parses the project once and runs each build in-process
(dbt's `dbtRunner`) on that manifest; its compiled macro templates stay warm too. The project is parsed again when
one of the files dbt reads changes (a model edited while the scheduler runs), so a build never runs stale code.

The worker runs in its own session, as the `dbt` command did: a Ctrl-C in the terminal reaches the scheduler only,
which lets the build finish, or interrupts it on a second Ctrl-C. Between builds it holds no connection: the DuckDB
file is free for readers and for other writers.

Parent and worker speak JSON lines: requests on the worker's stdin, replies on a pipe of their own (dbt's console
output keeps the worker's stdout and stderr, the scheduler's).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any, Literal, TypedDict

from ingestion.config import dbt_project_dir
from ingestion.dbt_files import parse_inputs
from ingestion.errors import DbtStartError

# dbt's exit codes: 0 everything passed, 1 a model or test failed, 2 dbt itself failed (dbt's ExitCodes)
BUILD_FAILED, DBT_FAILED = 1, 2


class BuildRequest(TypedDict):
    target: str
    select: list[str] | None


class Reply(TypedDict):
    kind: Literal["ready", "start-failed", "built"]
    code: int
    reason: str


class DbtWorker:
    """The parent's handle on the worker process: started at the first build, started again if it died."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.building = False
        self._process: subprocess.Popen[bytes] | None = None
        self._replies: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (the benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def build(self, target: str, select: list[str] | None) -> int:
        """Run one `dbt build` in the worker; its exit code as dbt's command would give it."""
        process, replies = self._started()
        request: BuildRequest = {"target": target, "select": select}
        assert process.stdin is not None
        self.building = True
        try:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
            line = replies.readline()
        except BrokenPipeError:
            line = b""
        finally:
            self.building = False
        if not line:
            return self._lost()
        reply: Reply = json.loads(line)
        return reply["code"]

    def interrupt(self) -> None:
        """Interrupt the running build, as a Ctrl-C interrupts dbt's command; the worker ends after replying."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)

    def close(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.stdin is not None:
            process.stdin.close()  # the worker's loop ends at the end of its input
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._replies is not None:
            self._replies.close()
            self._replies = None

    def _started(self) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        if self._process is not None and self._process.poll() is None and self._replies is not None:
            return self._process, self._replies
        self.close()
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "ingestion.dbt_worker", str(write_end)],
                stdin=subprocess.PIPE,
                pass_fds=(write_end,),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_end)
            raise DbtStartError(str(exc)) from exc
        finally:
            os.close(write_end)
        replies = os.fdopen(read_end, "rb")
        line = replies.readline()
        first: Reply | None = json.loads(line) if line else None
        if first is None or first["kind"] != "ready":
            process.wait()
            replies.close()
            reason = first["reason"] if first else f"the dbt worker exited with code {process.returncode}"
            raise DbtStartError(reason)
        self._process, self._replies = process, replies
        return process, replies

    def _lost(self) -> int:
        """The worker ended during a build (interrupted, or killed): that build's exit code is its own."""
        assert self._process is not None
        code = self._process.wait()
        self.close()
        return code if code > 0 else DBT_FAILED


def project_signature(project: Path) -> list[tuple[str, int, int]]:
    """Every file and folder dbt parses (ingestion/dbt_files.py), with its modification time and size: equal
    signatures, equal manifests. The profile is the project's, or the one in DBT_PROFILES_DIR."""
    profiles = Path(os.environ.get("DBT_PROFILES_DIR") or project)
    signature = []
    for path in dict.fromkeys([*parse_inputs(project, profiles), project / "profiles.yml"]):
        try:
            stat = path.stat()
        except OSError:
            continue
        signature.append((str(path), stat.st_mtime_ns, stat.st_size))
    return sorted(signature)


def _release_duckdb() -> None:
    """Close dbt-duckdb's database between builds, which dbt's command did by exiting (the adapter keeps one
    database open per process, in its connection manager)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        if environment is not None:
            environment.close()
            DuckDBConnectionManager._ENV = None


def serve(replies: IO[bytes]) -> None:
    """The worker's loop: one build per request line, until its input ends or a build is interrupted."""

    def reply(kind: Literal["ready", "start-failed", "built"], code: int = 0, reason: str = "") -> None:
        message: Reply = {"kind": kind, "code": code, "reason": reason}
        replies.write(json.dumps(message).encode() + b"\n")
        replies.flush()

    try:
        from dbt.cli.main import dbtRunner
    except ImportError as exc:
        reply("start-failed", DBT_FAILED, f"dbt is not installed ({exc})")
        return
    reply("ready")
    project = dbt_project_dir()
    manifest: Any = None
    parsed_for: tuple[str, list[tuple[str, int, int]]] | None = None
    for line in sys.stdin:
        request: BuildRequest = json.loads(line)
        target = request["target"]
        interrupted = False
        try:
            signature = (target, project_signature(project))
            if manifest is None or parsed_for != signature:
                # quiet: the console shows the builds, and a parse's errors still
                parsed = dbtRunner().invoke(["parse", "--quiet", "--target", target])
                manifest = parsed.result if parsed.success else None
                parsed_for = signature if parsed.success else None
                interrupted = isinstance(parsed.exception, KeyboardInterrupt)
            if manifest is None:
                code = DBT_FAILED
            else:
                # unit tests check the project's code, not the data: CI runs them, a production build need not
                command = ["build", "--target", target, "--exclude-resource-type", "unit_test"]
                command += ["--select", *request["select"]] if request["select"] else []
                result = dbtRunner(manifest=manifest).invoke(command)
                interrupted = isinstance(result.exception, KeyboardInterrupt)
                code = 0 if result.success else (BUILD_FAILED if result.exception is None else DBT_FAILED)
        except KeyboardInterrupt:
            interrupted, code = True, DBT_FAILED
        finally:
            _release_duckdb()
        reply("built", code)
        if interrupted:
            return


def main() -> int:
    with os.fdopen(int(sys.argv[1]), "wb") as replies:
        try:
            serve(replies)
        except KeyboardInterrupt:
            return 130  # interrupted between builds: nothing was running
    return 0


if __name__ == "__main__":
    sys.exit(main())
