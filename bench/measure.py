"""One measurement in a fresh process, so that its peak RSS is its own: prints a JSON line.

python bench/measure.py CASE ARGS...
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def case_cdc(method: str, old: str, new: str, dest: str) -> int:
    # imported here: a whole command measured by this process must not carry this process's own imports
    from bench.cdc_baselines import duckdb_join, pandas_hash
    from ingestion import cdc
    from ingestion.catalog import load_catalog
    from ingestion.readers.base import parquet_snapshot

    table = load_catalog().source("loyalty").table("clientes")
    if method == "project":
        previous = parquet_snapshot(Path(old))
        baseline = cdc.Baseline(Path(old), (), previous.expected_rows())
        result = cdc.diff(table, baseline, parquet_snapshot(Path(new)), datetime.now(UTC), 1, Path(dest))
        return result.counts.total
    compute = {"duckdb_join": duckdb_join, "pandas_hash": pandas_hash}[method]
    return int(compute(Path(old), Path(new), table.primary_key[0], table.column_names, Path(dest)))


def case_command(*command: str) -> float | None:
    """A whole command (ingestion, dbt); its children's peak RSS is reported.

    For a dbt command, returns the summed execution time of its nodes from run_results.json (dbt's own start-up,
    parsing and connection excluded), else None.
    """
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise SystemExit(completed.returncode)
    if "--target-path" in command:
        results = Path(command[command.index("--target-path") + 1]) / "run_results.json"
        if results.exists():
            return float(sum(r["execution_time"] for r in json.loads(results.read_text())["results"]))
    return None


def case_prepare_cdc(scale: str, folder: str) -> int:
    """Write the diff benchmark's two snapshots (in a process of its own, so the runner stays small)."""
    from bench.common import make_cdc_pair

    make_cdc_pair(int(scale), Path(folder))
    return 0


# Linux's prctl option that makes this process the parent of every orphaned descendant
PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> None:
    """Become the subreaper of this process's descendants, so that a process a command leaves running (the JVM a
    Spark session starts) is waited for here and its CPU time counted with the command's."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_orphans(patience: float = 120) -> None:
    """Wait for the adopted processes to end (a Spark JVM ends within seconds of its dbt process); one still
    running after `patience` seconds (a server a command started and left) is left alone, uncounted."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def main() -> None:
    case, *args = sys.argv[1:]
    adopt_orphans()
    if case == "prepare-cdc":
        case_prepare_cdc(*args)
        return
    started = time.perf_counter()
    inner: float | None = None
    if case == "cdc":
        rows = case_cdc(*args)
    else:
        rows, inner = 0, case_command(*args)
    reap_orphans()
    seconds = time.perf_counter() - started
    # Linux carries a process's peak RSS over fork and exec: the runner that starts this process must stay small
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # CPU seconds of this process and its descendants (a dbt command's threads, a DuckDB engine's, a Spark JVM's):
    # what a build costs on a machine shared with other work, where wall time depends on the others
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    figures = {
        "seconds": seconds,
        "peak_rss_mb": max(own, children) / 1024,
        "rows": rows,
        "inner_seconds": inner,
        "cpu_seconds": cpu,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
