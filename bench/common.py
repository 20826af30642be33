"""What every benchmark suite shares: where the project is, how a case is measured in a fresh process, the
result record, the dbt executable of this environment, and the report. The suites import this module and
`python -m bench` imports the suites, never the other way round.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ingestion.dbt_packages import dbt_executable as installed_dbt
from ingestion.dbt_packages import ensure_installed

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def dbt_executable() -> str:
    """The `dbt` of the Python running the benchmarks (its venv's), else the one on PATH, with the project's local
    packages installed (`dbt deps`) when this checkout has not yet."""
    dbt = installed_dbt()
    ensure_installed(ROOT, dbt)
    return dbt


@dataclass
class Result:
    suite: str
    case: str
    rows: int
    seconds: float
    peak_rss_mb: float
    runs: int
    note: str = ""
    # for dbt commands: the nodes' own execution time (run_results.json), without dbt's start-up
    inner_seconds: float | None = None
    # CPU seconds of the whole process and its children, when measured
    cpu_seconds: float | None = None
    # for an incremental build: the rows its capture changed, when the suite fixed them
    changed: int | None = None


def measure(
    args: list[str], repeats: int, prepare: Callable[[], None] | None = None, env: dict[str, str] | None = None
) -> tuple[float, float, int, float | None]:
    """Median seconds, peak RSS (MB), rows and inner seconds of `repeats` fresh-process runs of bench/measure.py."""
    figures = measure_figures(args, repeats, prepare, env)
    return figures.seconds, figures.peak_rss_mb, figures.rows, figures.inner_seconds


@dataclass(frozen=True)
class Figures:
    """Medians over a case's runs."""

    seconds: float
    peak_rss_mb: float
    rows: int
    inner_seconds: float | None
    cpu_seconds: float


def measure_figures(
    args: list[str], repeats: int, prepare: Callable[[], None] | None = None, env: dict[str, str] | None = None
) -> Figures:
    """`measure`, with the CPU seconds of the measured process and its children."""
    seconds: list[float] = []
    rss: list[float] = []
    inner: list[float] = []
    cpu: list[float] = []
    rows = 0
    for _ in range(repeats):
        if prepare is not None:
            prepare()
        completed = subprocess.run(
            [PYTHON, str(ROOT / "bench" / "measure.py"), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"bench case {args[:3]} failed:\n{completed.stderr[-3000:]}")
        figures = json.loads(completed.stdout.strip().splitlines()[-1])
        seconds.append(figures["seconds"])
        rss.append(figures["peak_rss_mb"])
        rows = figures["rows"]
        if figures.get("inner_seconds") is not None:
            inner.append(figures["inner_seconds"])
        cpu.append(figures["cpu_seconds"])
    return Figures(
        statistics.median(seconds),
        statistics.median(rss),
        rows,
        statistics.median(inner) if inner else None,
        statistics.median(cpu),
    )


def make_cdc_pair(scale: int, folder: Path) -> tuple[Path, Path]:
    """A clientes snapshot of `scale` rows and a next one with 1% updates, 0.5% inserts, 0.5% deletes."""
    sys.path.insert(0, str(ROOT))
    import duckdb

    from ingestion.catalog import load_catalog
    from ingestion.readers.base import CaptureContext
    from ingestion.readers.simulator import SimulatorReader

    folder.mkdir(parents=True, exist_ok=True)
    old, new = folder / "old.parquet", folder / "new.parquet"
    if old.exists() and new.exists():
        return old, new
    table = load_catalog().source("loyalty").table("clientes")
    produced = SimulatorReader(scale=scale).read(table, CaptureContext(folder, 0)).to_parquet(old, table)
    produced.rename(old)
    con = duckdb.connect()
    con.execute(
        f"""copy (
            select * replace (
                case when hash(idCliente, 'u') % 100 = 0 then qtdePontos + 1 else qtdePontos end as qtdePontos)
            from read_parquet('{old}')
            where hash(idCliente, 'd') % 200 <> 0
            union all
            select * replace (md5('new' || idCliente) as idCliente)
            from read_parquet('{old}')
            where hash(idCliente, 'i') % 200 = 0
        ) to '{new}' (format parquet, compression snappy)"""
    )
    return old, new


def write_report(results: list[Result], out: Path, target_lines: list[str]) -> None:
    """results.json, results.md (with the target lines the caller computed) and one plot per suite."""
    out.mkdir(parents=True, exist_ok=True)
    machine = {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    (out / "results.json").write_text(
        json.dumps({"machine": machine, "results": [asdict(r) for r in results]}, indent=1)
    )
    lines = [
        f"Machine: {machine['cores']} cores, Python {machine['python']}.",
        "",
        "Times are medians of fresh-process runs; `dbt nodes s` is the nodes' own execution time from dbt's",
        "run_results.json (without dbt's start-up, parsing and connection).",
        "",
        "| suite | case | rows | median s | dbt nodes s | peak RSS MB | runs | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        seconds = "n/a" if r.seconds != r.seconds else f"{r.seconds:.2f}"
        inner = "" if r.inner_seconds is None else f"{r.inner_seconds:.2f}"
        rss = "n/a" if r.peak_rss_mb != r.peak_rss_mb else f"{r.peak_rss_mb:.0f}"
        lines.append(f"| {r.suite} | {r.case} | {r.rows:,} | {seconds} | {inner} | {rss} | {r.runs} | {r.note} |")
    lines += ["", *target_lines]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(results, out)


def find(results: list[Result], suite: str, case: str, rows: int) -> Result | None:
    """The run's figure of a case at a size, if it was measured."""
    for r in results:
        if r.suite == suite and r.case == case and r.rows == rows and r.seconds == r.seconds:
            return r
    return None


def plot(results: list[Result], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for suite in sorted({r.suite for r in results}):
        cases = sorted({r.case for r in results if r.suite == suite})
        scaled = [c for c in cases if len({r.rows for r in results if r.suite == suite and r.case == c}) > 1]
        if not scaled:
            continue
        figure, (time_axis, rss_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
        for case in scaled:
            points = sorted(
                (r.rows, r.seconds, r.peak_rss_mb)
                for r in results
                if r.suite == suite and r.case == case and r.seconds == r.seconds
            )
            if not points:
                continue
            xs = [p[0] for p in points]
            time_axis.plot(xs, [p[1] for p in points], marker="o", label=case)
            rss_axis.plot(xs, [p[2] for p in points], marker="o", label=case)
        for axis, label in ((time_axis, "median wall time (s)"), (rss_axis, "peak RSS (MB)")):
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlabel("rows")
            axis.set_ylabel(label)
            axis.grid(True, which="both", alpha=0.3)
            axis.legend()
        figure.suptitle(f"{suite}: time and peak memory vs rows ({os.cpu_count()} cores)")
        figure.tight_layout()
        figure.savefig(out / f"{suite}.png", dpi=110)
        plt.close(figure)
