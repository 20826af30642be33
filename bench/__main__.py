"""Lago Mago benchmarks: `python -m bench [--scales 1e5,1e6,1e7] [--repeats 3] [--suites capture,...,hotmart]`.

Each figure is the median of `--repeats` runs, each run in a fresh process (peak RSS is that process's, or its
children's for whole commands). Ratios are between alternatives measured in the same invocation, since the
machine is noisy. Results go to `--out` (default bench/results): results.json, results.md and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import PYTHON, ROOT, Result, dbt_executable, find, measure, write_report


def suite_cdc(scales: list[int], repeats: int, work: Path, pandas_max: int) -> list[Result]:
    results = []
    for scale in scales:
        folder = work / f"cdc_{scale}"
        subprocess.run([PYTHON, str(ROOT / "bench" / "measure.py"), "prepare-cdc", str(scale), str(folder)],
                       cwd=ROOT, check=True)  # fmt: skip
        old, new = folder / "old.parquet", folder / "new.parquet"
        for method in ("project", "duckdb_join", "pandas_hash"):
            if method == "pandas_hash" and scale > pandas_max:
                results.append(
                    Result(
                        "cdc",
                        method,
                        scale,
                        float("nan"),
                        float("nan"),
                        0,
                        f"not run above {pandas_max:,} rows (--pandas-max)",
                    )
                )
                continue
            dest = work / f"cdc_{scale}" / f"{method}.parquet"
            seconds, rss, changed, _ = measure(["cdc", method, str(old), str(new), str(dest)], repeats)
            results.append(Result("cdc", method, scale, seconds, rss, repeats, f"{changed:,} changes"))
            print(f"cdc {method:<12} {scale:>12,} rows  {seconds:8.2f} s  {rss:8.0f} MB", flush=True)
    return results


def suite_e2e(repeats: int, work: Path, scale: int) -> list[Result]:
    """Fresh capture + build at the default scale, then the next day's incremental capture + build."""
    results = []
    for step in ("fresh", "next-day"):
        capture_times, build_times, capture_rss, build_rss = [], [], [], []
        for attempt in range(repeats):
            lake, warehouse = work / f"e2e_{attempt}" / "lake", work / f"e2e_{attempt}" / "wh.duckdb"
            env = {"LAKE_URI": str(lake), "DUCKDB_PATH": str(warehouse)}
            target = str(work / f"e2e_{attempt}" / "target")
            if step == "fresh":
                shutil.rmtree(work / f"e2e_{attempt}", ignore_errors=True)
            capture = ["command", PYTHON, "-m", "ingestion", "--lake", str(lake), "--scale", str(scale)]
            build = [
                "command",
                dbt_executable(),
                "build",
                "--target",
                "dev",
                "--target-path",
                target,
                "--log-path",
                target,
            ]
            seconds, rss, _, _ = measure(capture, 1, env=env)
            capture_times.append(seconds)
            capture_rss.append(rss)
            seconds, rss, _, _ = measure(build, 1, env=env)
            build_times.append(seconds)
            build_rss.append(rss)
        for name, times, rss_list in (("capture", capture_times, capture_rss), ("dbt build", build_times, build_rss)):
            results.append(
                Result("e2e", f"{step} {name}", scale, statistics.median(times), statistics.median(rss_list), repeats)
            )
        total = statistics.median(capture_times) + statistics.median(build_times)
        results.append(Result("e2e", f"{step} total", scale, total, max(capture_rss + build_rss), repeats))
        print(
            f"e2e {step:<9} capture {statistics.median(capture_times):.2f} s, "
            f"build {statistics.median(build_times):.2f} s",
            flush=True,
        )
    return results


def targets(results: list[Result]) -> list[str]:
    """The issue's targets, computed from this run's figures (reported, never asserted)."""
    lines = ["| target | measured | met |", "|---|---|---|"]
    from bench.capture import targets as capture_targets
    from bench.capture_shapes import targets as shape_targets

    lines += capture_targets(results) + shape_targets(results)

    def ratio(suite: str, slow: str, fast: str, rows: int) -> float | None:
        a, b = find(results, suite, slow, rows), find(results, suite, fast, rows)
        return a.seconds / b.seconds if a and b and b.seconds > 0 else None

    speedup = ratio("cdc", "pandas_hash", "project", 1_000_000)
    if speedup is not None:
        lines.append(f"| diff >= 50x faster than pandas at 1e6 | {speedup:.1f}x | {'yes' if speedup >= 50 else 'no'} |")
    for rows in (1_000_000, 10_000_000):
        over = ratio("cdc", "project", "duckdb_join", rows)
        if over is not None:
            lines.append(
                f"| diff within 1.5x of bare DuckDB join at {rows:,} rows | {over:.2f}x | "
                f"{'yes' if over <= 1.5 else 'no'} |"
            )
    big = find(results, "cdc", "project", 10_000_000)
    if big is not None:
        lines.append(
            f"| diff peak RSS < 4 GB at 1e7 | {big.peak_rss_mb:.0f} MB | {'yes' if big.peak_rss_mb < 4096 else 'no'} |"
        )
    bronze = ratio("bronze", "full-refresh", "incremental", 10_000_000)
    full, incremental = (find(results, "bronze", case, 10_000_000) for case in ("full-refresh", "incremental"))
    if full and incremental and full.inner_seconds and incremental.inner_seconds:
        model = full.inner_seconds / incremental.inner_seconds
        lines.append(
            f"| incremental Bronze >= 10x faster than full refresh at 1e7 (the model's own run) | {model:.1f}x | "
            f"{'yes' if model >= 10 else 'no'} |"
        )
    if bronze is not None:
        lines.append(
            f"| the same, whole `dbt run` commands (dbt's start-up included) | {bronze:.1f}x | "
            f"{'yes' if bronze >= 10 else 'no'} |"
        )
    from bench.dag import targets as dag_targets

    lines += dag_targets(results)[2:]
    from bench.hotmart import targets as hotmart_targets

    lines += hotmart_targets(results)
    from bench.postgres import targets as postgres_targets

    lines += postgres_targets(results)
    fresh = [r for r in results if r.suite == "e2e" and r.case == "fresh total"]
    if fresh:
        lines.append(
            f"| fresh end-to-end < 60 s at the default scale | {fresh[0].seconds:.1f} s | "
            f"{'yes' if fresh[0].seconds < 60 else 'no'} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1e5,1e6,1e7", help="comma-separated row counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--suites", default="capture,cdc,bronze,e2e,engines,dag,quickstart,hotmart")
    parser.add_argument("--pandas-max", type=float, default=1e6, help="largest scale for the pandas baseline")
    parser.add_argument(
        "--reference-max", type=float, default=1e7, help="largest scale for the capture's reference tool (pandas)"
    )
    parser.add_argument("--e2e-scale", type=int, default=10_000, help="simulator scale of the e2e suite")
    parser.add_argument("--hotmart-scale", type=int, default=10_000, help="simulator scale of the hotmart suite")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--report-only", action="store_true", help="rewrite results.md and plots from results.json")
    parser.add_argument("--no-fixed-costs", action="store_true", help="capture suite: skip the fixed-cost cases")
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the last results.json's figures, replacing only the cases measured now",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        stored = json.loads((args.out / "results.json").read_text())["results"]
        stored_results = [Result(**r) for r in stored]
        write_report(stored_results, args.out, targets(stored_results))
        print((args.out / "results.md").read_text())
        return 0
    scales = [int(float(s)) for s in args.scales.split(",")]
    suites = set(args.suites.split(","))
    work = args.out / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: list[Result] = []
    if "capture" in suites:
        from bench.capture import suite_capture
        from bench.capture_shapes import suite_shapes

        results += suite_capture(scales, args.repeats, work, int(args.reference_max), not args.no_fixed_costs)
        results += suite_shapes(scales, args.repeats, work)
    if "cdc" in suites:
        results += suite_cdc(scales, args.repeats, work, int(args.pandas_max))
    if "bronze" in suites:
        from bench.bronze import suite_bronze

        results += suite_bronze(scales, args.repeats, work)
    if "e2e" in suites:
        results += suite_e2e(args.repeats, work, args.e2e_scale)
    if "engines" in suites:
        from bench.engines import suite_engines

        results += suite_engines(args.repeats, work, args.e2e_scale)
    if "dag" in suites:
        from bench.dag import suite_cadence, suite_dag

        results += suite_dag(scales, args.repeats, work)
        results += suite_cadence([10, 100, 500], 1000, work)
    if "quickstart" in suites:
        from bench.quickstart import suite_quickstart

        results += suite_quickstart(args.repeats, work, args.e2e_scale)
    if "hotmart" in suites:
        from bench.hotmart import suite_hotmart

        results += suite_hotmart(args.repeats, work, args.hotmart_scale)
    if "postgres" in suites:
        from bench.postgres import suite_postgres

        results += suite_postgres(scales, args.repeats, work)
    if args.update and (args.out / "results.json").exists():
        stored = json.loads((args.out / "results.json").read_text())["results"]
        measured = {(x.suite, x.case, x.rows) for x in results}
        results = [Result(**r) for r in stored if (r["suite"], r["case"], r["rows"]) not in measured] + results
    write_report(results, args.out, targets(results))
    print((args.out / "results.md").read_text())
    print(f"benchmarks took {time.monotonic() - started:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
