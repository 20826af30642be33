"""dbt commands as processes forked from one that has imported dbt already: each is still a process of its own
(its own environment, working folder, output and exit code, nothing left over from the command before it), but
none pays dbt's import again (about 2 CPU-s of the 4 to 5 each `dbt` process spends before its first node).

One forking process per test process, started on first use and gone with it. It forks one command at a time;
a command asked for while another runs (a test's threads) runs as a plain `dbt` process instead.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

Completed = subprocess.CompletedProcess[str]

# The forking process: imports dbt and the DuckDB adapter once, then for each request (a JSON line on stdin)
# forks a child that runs `dbt ARGS` as the `dbt` script does, and answers the child's pid, then its exit code.
_SERVER = r"""
import json, os, sys
import dbt.cli.main, dbt.adapters.duckdb, dbt.adapters.duckdb.impl, dbt.parser.manifest
import dbt.task.build, dbt.task.run, dbt.task.test, dbt.task.compile, dbt.task.show, dbt.task.docs.generate
answers = sys.stdout
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            sys.argv = ["dbt", *request["args"]]
        except BaseException:
            import traceback
            traceback.print_exc()
            os._exit(1)
        # as the `dbt` script: its exit code, and the interpreter's own shutdown (output flushed, atexit run)
        dbt.cli.main.cli()
        sys.exit(0)
    answers.write(json.dumps({"pid": pid}) + "\n")
    answers.flush()
    _, status = os.waitpid(pid, 0)
    answers.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
    answers.flush()
"""


class _Forker:
    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._busy = threading.Lock()
        self._folder = Path(tempfile.mkdtemp(prefix="dbt-fork-"))  # the running command's stdout and stderr
        atexit.register(shutil.rmtree, self._folder, True)

    def _started(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            env = {name: value for name, value in os.environ.items() if not name.startswith("DBT_")}
            self._process = subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                start_new_session=True,
            )
            atexit.register(self._process.kill)
        return self._process

    def _answer(self, server: subprocess.Popen[str], deadline: float | None) -> dict[str, int]:
        assert server.stdout is not None
        if deadline is not None:
            ready, _, _ = select.select([server.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
        line = server.stdout.readline()
        if not line:
            raise RuntimeError("the dbt forking process ended")
        answer: dict[str, int] = json.loads(line)
        return answer

    def run(self, command: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float) -> Completed:
        if not self._busy.acquire(blocking=False):
            return _plain(command, cwd, env, timeout)
        try:
            server = self._started()
            assert server.stdin is not None
            out, err = self._folder / "stdout", self._folder / "stderr"
            request = {"args": list(command[1:]), "cwd": str(cwd), "env": dict(env), "stdout": str(out),
                       "stderr": str(err)}  # fmt: skip
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            deadline = time.monotonic() + timeout
            pid = self._answer(server, deadline)["pid"]
            try:
                code = self._answer(server, deadline)["code"]
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
                self._answer(server, None)
                raise subprocess.TimeoutExpired(list(command), timeout) from None
            stdout = out.read_text(encoding="utf-8", errors="replace")
            return Completed(list(command), code, stdout, err.read_text(encoding="utf-8", errors="replace"))
        except BaseException:
            # interrupted between a request and its answers: a new forking process for the next command
            if self._process is not None:
                self._process.kill()
                self._process = None
            raise
        finally:
            self._busy.release()


def _plain(command: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float) -> Completed:
    return subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


_FORKER = _Forker()


def run_dbt(command: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float) -> Completed:
    """`dbt ARGS` in `cwd` with exactly `env`, as `subprocess.run` with captured text output runs it; forked when
    it is the `dbt` beside this interpreter (the one the forking process imports)."""
    if Path(command[0]) != Path(sys.executable).parent / "dbt":
        return _plain(command, cwd, env, timeout)
    return _FORKER.run(command, cwd, env, timeout)
