"""The whole dbt DAG: does a build cost what changed?

Two measurements, both of `dbt build --target dev` on the loyalty lineage (Bronze, history, Silver, Gold and their
tests), each in a fresh process (peak RSS is dbt's):

- `--scales`: after one capture (about 1% of customers changed), an incremental build against a `--full-refresh`
  of the same warehouse and lake, with the nodes' own time per layer (from run_results.json);
- `--cadence`: the incremental build after 10, 100 and 500 captures at a small scale, each build after one more
  capture (the same amount of new data per build); flat means the build does not grow with the history.

    python -m bench.dag --scales 1e6,1e7 --cadence 10,100,500 --cadence-scale 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

from bench.common import PYTHON, ROOT, Result, dbt_executable, measure

SELECT = ("--select", "source:loyalty+")
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

    def build_command(self, *extra: str) -> list[str]:
        paths = ["--target-path", str(self.target), "--log-path", str(self.target)]
        return [dbt_executable(), "build", "--target", "dev", *paths, *SELECT, *extra]

    def build(self) -> None:
        subprocess.run(self.build_command(), cwd=ROOT, env={**os.environ, **self.env}, check=True, capture_output=True)


def suite_dag(scales: list[int], repeats: int, work: Path) -> list[Result]:
    results = []
    for scale in scales:
        site = Site(work / f"dag_{scale}", scale)
        site.capture()
        site.build()
        site.capture()
        before = site.folder / "before.duckdb"
        shutil.copyfile(site.warehouse, before)

        def restore(before: Path = before, warehouse: Path = site.warehouse) -> None:
            shutil.copyfile(before, warehouse)

        for case, extra in (("incremental", ()), ("full-refresh", ("--full-refresh",))):
            seconds, rss, _, inner = measure(["command", *site.build_command(*extra)], repeats, restore, site.env)
            layers = layer_seconds(site.target)
            note = "; ".join(f"{layer} {value:.2f} s" for layer, value in sorted(layers.items()))
            results.append(Result("dag", case, scale, seconds, rss, repeats, note, inner))
            print(f"dag {case:<12} {scale:>12,} customers {seconds:8.2f} s {rss:8.0f} MB  {note}", flush=True)
    return results


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


def report(results: list[Result]) -> list[str]:
    lines = [
        "| suite | case | customers | wall s | nodes s | peak MB | per layer (nodes' own s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        inner = f"{r.inner_seconds:.2f}" if r.inner_seconds is not None else ""
        lines.append(
            f"| {r.suite} | {r.case} | {r.rows:,} | {r.seconds:.2f} | {inner} | {r.peak_rss_mb:.0f} | {r.note} |"
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
    cadence = [r for r in results if r.suite == "cadence"]
    if len(cadence) >= 2:
        lines.append(
            f"- incremental build {cadence[-1].case} / {cadence[0].case}: "
            f"{cadence[-1].seconds / cadence[0].seconds:.2f}x (wall), "
            f"{(cadence[-1].inner_seconds or 0) / max(cadence[0].inner_seconds or 1e-9, 1e-9):.2f}x (nodes)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1e5")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cadence", default="10,100")
    parser.add_argument("--cadence-scale", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    work = args.out / "tmp"
    results: list[Result] = []
    if args.scales:
        results += suite_dag([int(float(s)) for s in args.scales.split(",")], args.repeats, work)
    if args.cadence:
        results += suite_cadence([int(p) for p in args.cadence.split(",")], args.cadence_scale, work)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dag.json").write_text(json.dumps([r.__dict__ for r in results], indent=2) + "\n", encoding="utf-8")
    page = ["# The whole DAG: incremental vs full refresh", "", *report(results)]
    (args.out / "dag.md").write_text("\n".join(page) + "\n", encoding="utf-8")
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
