"""The whole dbt DAG: does a build cost what changed?

Two measurements, both of `dbt build --target dev` on the loyalty lineage (Bronze, history, Silver, Gold and their
tests, unit tests left out as in a production build), each in a fresh process (peak RSS is dbt's; CPU seconds are
the process's and its children's):

- `--scales`: the simulator's first day built, then one capture of the same change at every scale (10,000
  customers' points moved, `--changed-customers`): the incremental build of that capture against a
  `--full-refresh` of the same warehouse and lake, with the nodes' own time per layer (from run_results.json); a
  build with no new file (after the incremental one); and dbt's own floor, `dbt parse` with a warm partial parse.
  Against the work's floor too: "bare DuckDB", a fresh Python process doing what the build does with that capture
  in plain SQL (bench/dag_floor.py: merge, history, Silver, the touched cube days and report months, the churn
  summary, the checks of the written rows), on the same warehouse and lake: the target is an incremental build
  within 2x of it at 1e7 (printed at every scale).
  A fixed change, so that a build's cost can be compared across table sizes (a simulator day changes 1 to 3% of
  customers: 100 times more rows at 1e7 than at 1e5; the cadence suite measures days);
- the same incremental build in the scheduler's kept dbt process (`schedule --dbt-build`: ingestion/dbt_worker.py),
  which parsed the project and ran one build before: that process's CPU seconds for the build alone;
- `--cadence`: the incremental build after 10, 100 and 500 captures at a small scale, each build after one more
  capture (the same amount of new data per build); flat means the build does not grow with the history.

    python -m bench.dag --scales 1e6,1e7 --cadence 10,100,500 --cadence-scale 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import duckdb

from bench.common import PYTHON, ROOT, Result, dbt_executable, find, measure, measure_figures
from ingestion.catalog import load_catalog
from ingestion.dbt_worker import DbtWorker
from ingestion.duck import quote_identifier, sql_literal

SELECT = ("--select", "source:loyalty+", "--exclude-resource-type", "unit_test")
CHANGED_CUSTOMERS = 10_000  # the measured capture's change by default, the same at every scale
# the cases that apply the measured capture to the warehouse as it was before it
CAPTURE_CASES = ("incremental", "bare DuckDB")
LAYERS = (("bronze_", "bronze"), ("history_", "history"), ("silver_", "silver"), ("gold_", "gold"))


def layer_of(unique_id: str) -> str:
    kind, _, name = unique_id.split(".")[:3]
    if kind in ("test", "unit_test"):
        return "tests"
    for prefix, layer in LAYERS:
        if name.startswith(prefix):
            return layer
    return "other"


def layer_seconds(target: Path) -> dict[str, float]:
    """The nodes' own execution time per layer of the last dbt command run with this target path."""
    totals: dict[str, float] = defaultdict(float)
    for result in json.loads((target / "run_results.json").read_text(encoding="utf-8"))["results"]:
        totals[layer_of(result["unique_id"])] += float(result["execution_time"])
    return dict(totals)


def models_kept(target: Path) -> str:
    """How many models of the last dbt command kept their last build (nothing new: its message NOTHING NEW)."""
    results = json.loads((target / "run_results.json").read_text(encoding="utf-8"))["results"]
    messages = [result.get("message") for result in results if result["unique_id"].startswith("model.")]
    return f"models kept {messages.count('NOTHING NEW')} of {len(messages)}"


class Site:
    """One lake, one warehouse, one target folder."""

    def __init__(self, folder: Path, scale: int) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder, self.scale = folder, scale
        self.lake, self.warehouse, self.target = folder / "lake", folder / "wh.duckdb", folder / "target"
        self.env = {"LAKE_URI": str(self.lake), "DUCKDB_PATH": str(self.warehouse)}

    def capture(self) -> None:
        command = [PYTHON, "-m", "ingestion", "run", "--source", "loyalty", "--lake", str(self.lake)]
        subprocess.run([*command, "--scale", str(self.scale)], cwd=ROOT, env={**os.environ, **self.env}, check=True,
                       capture_output=True)  # fmt: skip

    def change_customers(self, count: int) -> None:
        """Capture `count` customers with their points moved by one, whatever the scale: the customers as the
        warehouse's Bronze holds them (the last capture), written as the CSV snapshot `--from csv` reads, with the
        first `count` customers in the order of a hash of their key changed."""
        table = load_catalog(project=ROOT).source("loyalty").table("clientes")
        key, points = table.primary_key[0], "qtdePontos"
        columns = ", ".join(
            f"bronze.{quote_identifier(name)} + (changed.key is not null)::int as {quote_identifier(name)}"
            if name == points
            else f"bronze.{quote_identifier(name)}"
            for name in table.column_names
        )
        folder = self.folder / "changed"
        folder.mkdir(exist_ok=True)
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            con.execute(
                f"""copy (
                    with changed as (
                        select {quote_identifier(key)} as key from bronze.bronze_loyalty__clientes
                        order by hash({quote_identifier(key)}), {quote_identifier(key)} limit {int(count)}
                    )
                    select {columns} from bronze.bronze_loyalty__clientes as bronze
                    left join changed on bronze.{quote_identifier(key)} = changed.key
                ) to {sql_literal(str(folder / "clientes.csv"))}
                (header, delimiter {sql_literal(table.csv_separator)})"""
            )
        command = [PYTHON, "-m", "ingestion", "run", "--source", "loyalty", "--from", "csv", "--path", str(folder)]
        subprocess.run([*command, "--tables", "clientes", "--lake", str(self.lake)], cwd=ROOT,
                       env={**os.environ, **self.env}, check=True, capture_output=True)  # fmt: skip

    def build_command(self, *extra: str) -> list[str]:
        return [*self.dbt_command("build"), *SELECT, *extra]

    def dbt_command(self, command: str) -> list[str]:
        paths = ["--target-path", str(self.target), "--log-path", str(self.target)]
        return [dbt_executable(), command, "--target", "dev", *paths]

    def build(self) -> None:
        subprocess.run(self.build_command(), cwd=ROOT, env={**os.environ, **self.env}, check=True, capture_output=True)


def suite_dag(scales: list[int], repeats: int, work: Path, changed_customers: int = CHANGED_CUSTOMERS) -> list[Result]:
    results = []
    for scale in scales:
        site = Site(work / f"dag_{scale}", scale)
        site.capture()
        site.build()
        site.change_customers(changed_customers)
        before = site.folder / "before.duckdb"
        shutil.copyfile(site.warehouse, before)

        after = site.folder / "after.duckdb"

        def restore(warehouse: Path = site.warehouse, state: Path = before) -> None:
            shutil.copyfile(state, warehouse)

        def restore_after(warehouse: Path = site.warehouse, state: Path = after) -> None:
            shutil.copyfile(state, warehouse)

        # the warehouse after the incremental build: what a build with no new file starts from
        restore()
        site.build()
        shutil.copyfile(site.warehouse, after)
        cases = (
            ("dbt parse", site.dbt_command("parse"), None),
            ("no new file", site.build_command(), restore_after),
            ("incremental", site.build_command(), restore),
            ("full-refresh", site.build_command("--full-refresh"), restore),
            ("bare DuckDB", floor_command(site), restore),
        )
        for case, command, prepare in cases:
            figures = measure_figures(["command", *command], repeats, prepare, site.env)
            note = ""
            if case not in ("dbt parse", "bare DuckDB"):
                layers = layer_seconds(site.target)
                note = "; ".join(f"{layer} {value:.2f} s" for layer, value in sorted(layers.items()))
                note += f"; {models_kept(site.target)}"
            # `dbt parse` runs no node (and leaves the last build's run_results.json in place), nor does the floor
            inner = None if case in ("dbt parse", "bare DuckDB") else figures.inner_seconds
            measured = (figures.seconds, figures.peak_rss_mb, repeats, note, inner, figures.cpu_seconds)
            results.append(
                Result("dag", case, scale, *measured, changed=changed_customers if case in CAPTURE_CASES else None)
            )
            print(
                f"dag {case:<12} {scale:>12,} customers {figures.seconds:8.2f} s {figures.cpu_seconds:8.2f} CPU-s "
                f"{figures.peak_rss_mb:8.0f} MB  {note}",
                flush=True,
            )
        results.append(scheduler_build(site, repeats, restore, restore_after))
    return results


def floor_command(site: Site) -> list[str]:
    """The incremental build's work without dbt, in a fresh process like the dbt cases (bench/dag_floor.py)."""
    return [PYTHON, "-m", "bench.dag_floor", str(site.warehouse), str(site.lake)]


def process_cpu_seconds(pid: int) -> float:
    """User and system seconds of a running process so far (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def process_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scheduler_build(site: Site, repeats: int, restore: Callable[[], None], warm: Callable[[], None]) -> Result:
    """The incremental build as `schedule --dbt-build` runs it after its first build: in its kept dbt process."""
    variables = {**site.env, "DBT_TARGET_PATH": str(site.target), "DBT_LOG_PATH": str(site.target)}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    worker = DbtWorker(ROOT)
    try:
        warm()
        if worker.build("dev", [SELECT[1]]) != 0:  # the scheduler's first build: parse, import, templates
            raise RuntimeError("the scheduler's first build failed")
        pid = worker.pid  # the kept process: every build below runs in it
        if pid is None:
            raise RuntimeError("the scheduler's dbt process is not running")
        cpu, wall = [], []
        for _ in range(repeats):
            restore()
            start_cpu, start = process_cpu_seconds(pid), time.monotonic()
            if worker.build("dev", [SELECT[1]]) != 0:
                raise RuntimeError("the scheduler's incremental build failed")
            wall.append(time.monotonic() - start)
            cpu.append(process_cpu_seconds(pid) - start_cpu)
        peak = process_peak_mb(pid)
    finally:
        worker.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    layers = layer_seconds(site.target)
    note = "; ".join(f"{layer} {value:.2f} s" for layer, value in sorted(layers.items()))
    figures = (statistics.median(wall), peak, repeats, note, sum(layers.values()), statistics.median(cpu))
    print(f"dag scheduler build {site.scale:>12,} customers {figures[0]:8.2f} s {figures[5]:8.2f} CPU-s", flush=True)
    return Result("dag", "scheduler build", site.scale, *figures)  # the same capture as "incremental"


def suite_cadence(points: list[int], scale: int, work: Path) -> list[Result]:
    site = Site(work / f"cadence_{scale}", scale)
    results = []
    captured = 0
    for point in points:
        while captured < point - 1:
            site.capture()
            captured += 1
        site.build()  # catch up on every capture but the last
        site.capture()
        captured += 1
        seconds, rss, _, inner = measure(["command", *site.build_command()], 1, None, site.env)
        layers = layer_seconds(site.target)
        note = "; ".join(f"{layer} {value:.2f} s" for layer, value in sorted(layers.items()))
        results.append(Result("cadence", f"after {point} captures", scale, seconds, rss, 1, note, inner))
        print(f"cadence after {point:>4} captures {seconds:8.2f} s {rss:8.0f} MB  {note}", flush=True)
    return results


def targets(results: list[Result]) -> list[str]:
    """The targets of a build that follows the changes, from this run's CPU seconds (reported, never asserted)."""
    lines = ["| target | measured | met |", "|---|---|---|"]

    def cpu(case: str, rows: int) -> float | None:
        found = find(results, "dag", case, rows)
        return found.cpu_seconds if found is not None else None

    def line(target: str, value: float | None, met: bool, unit: str = "x") -> None:
        if value is not None:
            lines.append(f"| {target} | {value:.2f}{unit} | {'yes' if met else 'no'} |")

    scales = sorted({r.rows for r in results if r.suite == "dag"})
    for rows in scales:
        cases = ("dbt parse", "no new file", "incremental", "full-refresh")
        parse, noop, incremental, full = (cpu(case, rows) for case in cases)
        if parse and noop is not None:
            ratio = noop / parse
            line(f"`dbt build` with no new file <= dbt's start-up (`dbt parse`) at {rows:,}", ratio, ratio <= 1.0)
        if parse and incremental is not None and rows <= 1_000_000:
            ratio = incremental / parse
            changed = find(results, "dag", "incremental", rows)
            what = f"{changed.changed:,} changed customers" if changed and changed.changed else "one capture"
            line(f"incremental build ({what}) <= 2.5x `dbt parse` at {rows:,}", ratio, ratio <= 2.5)
        floor = cpu("bare DuckDB", rows)
        if floor and incremental is not None:
            # the target is set at 1e7, where the capture is a small part of the tables; printed at every scale
            ratio = incremental / floor
            changed = find(results, "dag", "incremental", rows)
            what = f"{changed.changed:,} changed customers" if changed and changed.changed else "one capture"
            line(f"incremental build ({what}) <= 2x a bare DuckDB script at {rows:,}", ratio, ratio <= 2.0)
        scheduler = cpu("scheduler build", rows)
        if parse and scheduler is not None:
            # not the same process kind: the scheduler's kept dbt pays no start-up at all
            lines.append(
                f"| (scheduler) incremental build in the kept dbt process, against `dbt parse` at {rows:,} "
                f"| {scheduler / parse:.2f}x | {'yes' if scheduler / parse <= 2.5 else 'no'} |"
            )
        if incremental and full is not None and rows >= 10_000_000:
            ratio = full / incremental
            line(f"full refresh / incremental >= 10x at {rows:,}", ratio, ratio >= 10)
    small, large = cpu("incremental", 100_000), cpu("incremental", 10_000_000)
    if small and large is not None:
        line("incremental (the same change) at 1e7 <= 1.5x incremental at 1e5", large / small, large / small <= 1.5)
    peak = [r.peak_rss_mb for r in results if r.suite == "dag" and r.rows >= 10_000_000]
    if peak:
        line("peak memory of any build at 1e7 <= 4 GB", max(peak) / 1024, max(peak) <= 4096, " GB")
    return [*lines, *flatness_bound(cpu)]


def flatness_bound(cpu: Callable[[str, int], float | None]) -> list[str]:
    """How flat a build can be at all: the bare script is the physical limit, and it is not flat itself. A build
    does at least the limit's work, and what it does on top of that does not shrink as the tables grow, so it
    grows from 1e5 to 1e7 by at least what the limit grows by."""
    small, large = cpu("bare DuckDB", 100_000), cpu("bare DuckDB", 10_000_000)
    built, parse = cpu("incremental", 100_000), cpu("dbt parse", 100_000)
    if small is None or large is None or not built or not parse:
        return []
    growth = large - small
    at_target = 2.5 * parse  # the most an incremental build meeting its 1e5 target costs
    return [
        "",
        f"- the bare script grows by {growth:.2f} CPU-s from 100,000 to 10,000,000 customers: an incremental build"
        f" that grew by only that much would be {(built + growth) / built:.2f}x at 1e7 / 1e5 (this run's 1e5 build),"
        f" and a build at the 1e5 target (2.5x `dbt parse`) {(at_target + growth) / at_target:.2f}x",
    ]


def report(results: list[Result]) -> list[str]:
    lines = [
        "| suite | case | customers | wall s | CPU s | nodes s | peak MB | per layer (nodes' own s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        inner = f"{r.inner_seconds:.2f}" if r.inner_seconds is not None else ""
        cpu = f"{r.cpu_seconds:.2f}" if r.cpu_seconds is not None else ""
        lines.append(
            f"| {r.suite} | {r.case} | {r.rows:,} | {r.seconds:.2f} | {cpu} | {inner} | {r.peak_rss_mb:.0f} "
            f"| {r.note} |"
        )
    by_scale: dict[int, dict[str, Result]] = defaultdict(dict)
    for r in results:
        if r.suite == "dag":
            by_scale[r.rows][r.case] = r
    lines.append("")
    for scale, cases in sorted(by_scale.items()):
        if {"incremental", "full-refresh"} <= set(cases):
            full, incremental = cases["full-refresh"], cases["incremental"]
            lines.append(
                f"- {scale:,} customers: full refresh / incremental = {full.seconds / incremental.seconds:.2f}x "
                f"(wall), {(full.inner_seconds or 0) / max(incremental.inner_seconds or 1e-9, 1e-9):.2f}x (nodes)"
            )
        if {"incremental", "scheduler build"} <= set(cases):
            kept, incremental = cases["scheduler build"], cases["incremental"]
            lines.append(
                f"- {scale:,} customers: the scheduler's build in its kept dbt process / `dbt build` = "
                f"{(kept.cpu_seconds or 0) / max(incremental.cpu_seconds or 1e-9, 1e-9):.2f}x (CPU), "
                f"{kept.seconds / incremental.seconds:.2f}x (wall)"
            )
        if "no new file" in cases:
            noop = cases["no new file"]
            lines.append(
                f"- {scale:,} customers: a build with no new file runs {noop.inner_seconds or 0:.2f} s of nodes; the"
                " scheduler and Dagster start no build then (they know no capture changed anything)"
            )
    cadence = [r for r in results if r.suite == "cadence"]
    if len(cadence) >= 2:
        lines.append(
            f"- incremental build {cadence[-1].case} / {cadence[0].case}: "
            f"{cadence[-1].seconds / cadence[0].seconds:.2f}x (wall), "
            f"{(cadence[-1].inner_seconds or 0) / max(cadence[0].inner_seconds or 1e-9, 1e-9):.2f}x (nodes)"
        )
    return [*lines, "", *targets(results)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1e5")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--changed-customers", type=int, default=CHANGED_CUSTOMERS)
    parser.add_argument("--cadence", default="10,100")
    parser.add_argument("--cadence-scale", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    work = args.out / "tmp"
    results: list[Result] = []
    if args.scales:
        scales = [int(float(s)) for s in args.scales.split(",")]
        results += suite_dag(scales, args.repeats, work, args.changed_customers)
    if args.cadence:
        results += suite_cadence([int(p) for p in args.cadence.split(",")], args.cadence_scale, work)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dag.json").write_text(json.dumps([r.__dict__ for r in results], indent=2) + "\n", encoding="utf-8")
    command = shlex.join(["python", "-m", "bench.dag", *(argv if argv is not None else sys.argv[1:])])
    machine = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    page = ["# The whole DAG: incremental vs full refresh", "", f"`{command}` ({machine}).", "", *report(results)]
    (args.out / "dag.md").write_text("\n".join(page) + "\n", encoding="utf-8")
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
