"""Hotmart: the incremental build after 10, 100 and 500 simulated days, against a --full-refresh of the same lake.

For each history length N the lake holds N simulator days (one capture a day, the same purchases per day); the
warehouse is built once on it, then day N + 1 is captured and the Hotmart models are built from a copy of that
warehouse each time: incrementally (only day N + 1's files and the purchases and order dates they touch) and with
`--full-refresh` (every event again). Both `dbt run` (the models) and `dbt build` (models and their tests) are
measured. The figure to watch is the ratio of the incremental build at 500 days to the one at 10 days.

    python -m bench --suites hotmart      (with the other suites' report, into bench/results/results.md)
    python -m bench.hotmart [--repeats 3] [--scale 10000] [--histories 10,100,500]      (into bench/results/hotmart/)
    python -m bench.hotmart capture LAKE DAYS SCALE      (appends DAYS simulator days to LAKE, in one process)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import PYTHON, ROOT, Result, dbt_executable, measure, write_report

HISTORIES = (10, 100, 500)
MODELS = "path:models/bronze/hotmart path:models/silver/hotmart path:models/gold/hotmart"


def capture_days(lake: Path, days: int, scale: int) -> None:
    """Append `days` simulator days to the lake in this process (a process per day costs more than the day)."""
    from ingestion.cli import main as ingestion_main

    for _ in range(days):
        arguments = ["run", "--source", "hotmart", "--lake", str(lake), "--scale", str(scale), "--seed", "3"]
        if ingestion_main(arguments) != 0:
            raise RuntimeError(f"the Hotmart simulator failed on {lake}")


def _capture(lake: Path, days: int, scale: int) -> None:
    subprocess.run([PYTHON, "-m", "bench.hotmart", "capture", str(lake), str(days), str(scale)], cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip


def suite_hotmart(repeats: int, work: Path, scale: int, histories: tuple[int, ...] = HISTORIES) -> list[Result]:
    folder = work / "hotmart"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    growing = folder / "lake"
    results = []
    days = 0
    for history in histories:
        _capture(growing, history - days, scale)
        days = history
        lake, warehouse, base = folder / f"lake_{history}", folder / "wh.duckdb", folder / f"base_{history}.duckdb"
        target = folder / "target"
        shutil.rmtree(lake, ignore_errors=True)
        shutil.copytree(growing, lake)
        env = {"LAKE_URI": str(lake), "DUCKDB_PATH": str(base)}
        dbt = [dbt_executable(), "--target", "dev", "--target-path", str(target), "--log-path", str(target)]
        dbt_run = [dbt[0], "run", *dbt[1:], "--select", MODELS]
        dbt_build = [dbt[0], "build", *dbt[1:], "--select", MODELS]
        subprocess.run(dbt_run, cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True)
        _capture(lake, 1, scale)

        def restore(base: Path = base, warehouse: Path = warehouse) -> None:
            shutil.copyfile(base, warehouse)

        env["DUCKDB_PATH"] = str(warehouse)
        for command, name in ((dbt_run, "run"), (dbt_build, "build")):
            for case, extra in (("incremental", []), ("full-refresh", ["--full-refresh"])):
                seconds, rss, _, inner = measure(["command", *command, *extra], repeats, prepare=restore, env=env)
                note = f"dbt {name} of the Hotmart models after {history} days; {scale // 100} purchases a day"
                results.append(Result("hotmart", f"{name} {case}", history, seconds, rss, repeats, note, inner))
                print(f"hotmart {name:<5} {case:<12} {history:>4} days  {seconds:7.2f} s  (nodes {inner or 0:.2f} s)  "
                      f"{rss:6.0f} MB", flush=True)  # fmt: skip
    return results


def targets(results: list[Result]) -> list[str]:
    """The issue's Hotmart targets from this run's figures (reported, never asserted)."""

    def find(case: str, history: int) -> Result | None:
        return next((r for r in results if r.suite == "hotmart" and r.case == case and r.rows == history), None)

    lines: list[str] = []
    histories = sorted({r.rows for r in results if r.suite == "hotmart"})
    if len(histories) < 2:
        return lines
    first, last = histories[0], histories[-1]
    for name in ("run", "build"):
        small, large = find(f"{name} incremental", first), find(f"{name} incremental", last)
        full = find(f"{name} full-refresh", last)
        if small and large and small.inner_seconds and large.inner_seconds:
            flat = large.inner_seconds / small.inner_seconds
            lines.append(
                f"| Hotmart incremental dbt {name} flat from {first} to {last} days (nodes' time) | {flat:.2f}x | "
                f"{'yes' if flat <= 1.3 else 'no'} |"
            )
            whole = large.seconds / small.seconds
            met = "yes" if whole <= 1.3 else "no"
            lines.append(f"| the same, whole commands (dbt's start-up included) | {whole:.2f}x | {met} |")
        if large and full and large.inner_seconds and full.inner_seconds:
            lines.append(
                f"| Hotmart full refresh / incremental at {last} days, dbt {name} (nodes' time) | "
                f"{full.inner_seconds / large.inner_seconds:.1f}x | - |"
            )
    return lines


def main(argv: list[str]) -> int:
    if argv[:1] == ["capture"]:
        lake, days, scale = argv[1:]
        capture_days(Path(lake), int(days), int(scale))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.hotmart", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=int, default=10_000, help="simulator scale: scale / 100 purchases a day")
    parser.add_argument("--histories", default="10,100,500", help="comma-separated history lengths, in days")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    histories = tuple(sorted(int(days) for days in args.histories.split(",")))
    results = suite_hotmart(args.repeats, args.out / "tmp", args.scale, histories)
    report = args.out / "hotmart"
    write_report(results, report, targets(results))
    print((report / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
