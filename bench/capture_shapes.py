"""The CSV capture on table shapes other than clientes': a wide table and a composite key, each against its floor.

The narrow `clientes` table (bench/capture.py) checks 9 values a row through one column of key. Two shapes cost
the capture more per row, so they are measured too, each against the same bare DuckDB diff as the narrow floor
(read the CSV with declared types, full outer join with the previous snapshot on the key, IS DISTINCT FROM on
every column, write the changed rows):

- `50 columns`: a one-column key and 49 columns of every declarable kind (integer, bigint, double, varchar,
  date, timestamp);
- `3-column key`: a key of (store, order, line) and four columns.

The second snapshot has 1% of the rows updated, 0.5% inserted and 0.5% deleted, as in the narrow case. The shapes
are declared in a sources file of their own, in a project folder beside the data (`LAGO_PROJECT_DIR`), so the
capture is the one a user would run on such a table.

    python -m bench --suites capture --scales 1e6        (with the other suites' report)
    python -m bench.capture_shapes generate SHAPE ROWS FOLDER
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.common import PYTHON, ROOT, Result, measure_figures

SOURCE = "bench"
# the largest table the shapes are measured at: the wide table is 50 columns
LARGEST = 1_000_000


@dataclass(frozen=True)
class Shape:
    """A table to capture: its name, key, declared columns, and a row of it as SQL over `i`."""

    case: str
    table: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str, str], ...]  # name, declared type, SQL of the value over i

    def row_sql(self) -> str:
        return ", ".join(f'{value} as "{name}"' for name, _, value in self.columns)

    def types(self) -> str:
        return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind, _ in self.columns) + "}"


def _wide_columns() -> tuple[tuple[str, str, str], ...]:
    kinds = (
        ("integer", "((i * {k}) % 1000)::int"),
        ("bigint", "(i * {k} * 7919)::bigint"),
        ("double", "round((i % 9973) * 0.01 * {k}, 2)"),
        ("varchar", "'v' || ((i * {k}) % 100003)"),
        ("date", "date '2020-01-01' + ((i * {k}) % 2000)::int"),
        ("timestamp", "timestamp '2024-01-01' + to_seconds((i * {k}) % 30000000)"),
    )
    columns = [("id", "varchar", "md5('w' || i)")]
    for k in range(1, 50):
        kind, value = kinds[k % len(kinds)]
        columns.append((f"c{k:02d}", kind, value.format(k=k)))
    return tuple(columns)


SHAPES = {
    "wide": Shape("50 columns", "wide_rows", ("id",), _wide_columns()),
    "composite": Shape(
        "3-column key",
        "order_lines",
        ("store_id", "order_id", "line_no"),
        (
            ("store_id", "integer", "(i % 97)::int"),
            ("order_id", "bigint", "(i // 97)::bigint"),
            ("line_no", "integer", "(i % 3)::int"),
            ("product", "varchar", "'p' || (i % 5003)"),
            ("quantity", "integer", "(1 + i % 9)::int"),
            ("price", "double", "round((i % 9973) * 0.01, 2)"),
            ("updated_at", "timestamp", "timestamp '2024-01-01' + to_seconds(i % 30000000)"),
        ),
    ),
}


def declare(folder: Path) -> Path:
    """A project folder whose only sources file declares the shapes, for `LAGO_PROJECT_DIR`."""
    project = folder / "project"
    tables = [
        {
            "name": shape.table,
            "meta": {"primary_key": list(shape.key)},
            "columns": [{"name": name, "data_type": kind} for name, kind, _ in shape.columns],
        }
        for shape in SHAPES.values()
    ]
    path = project / "models" / "bronze" / SOURCE / f"_{SOURCE}__sources.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": 2, "sources": [{"name": SOURCE, "meta": {"capture": "snapshot"}, "tables": tables}]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return project


def generate(shape: Shape, rows: int, folder: Path) -> tuple[Path, Path]:
    """`day1/<table>.csv` and `day2/<table>.csv` under `folder`, and the floor's previous snapshot."""
    import duckdb

    day1, day2 = folder / "day1" / f"{shape.table}.csv", folder / "day2" / f"{shape.table}.csv"
    previous = folder / "previous.parquet"
    if day1.exists() and day2.exists() and previous.exists():
        return day1, day2
    for path in (day1, day2):
        path.parent.mkdir(parents=True, exist_ok=True)
    rows_sql = f"select {shape.row_sql()}, i from range({rows}) as t(i)"
    first, *_ = [name for name, kind, _ in shape.columns if name not in shape.key and kind in ("integer", "bigint")]
    changed_key = {"id": "md5('new' || i)", "order_id": "(i // 97 + 1000000000000)::bigint"}
    con = duckdb.connect()
    con.execute(f"copy (select * exclude (i) from ({rows_sql})) to '{day1}' (header)")
    new_key = ", ".join(f'{changed_key[k]} as "{k}"' for k in shape.key if k in changed_key)
    con.execute(
        f"""copy (
            select * exclude (i) replace (case when i % 100 = 1 then "{first}" + 1 else "{first}" end as "{first}")
            from ({rows_sql}) where i % 200 <> 3
            union all
            select * exclude (i) replace ({new_key})
            from ({rows_sql}) where i % 200 = 7
        ) to '{day2}' (header)"""
    )
    con.execute(
        f"copy (select * from read_csv('{day1}', header=true, columns={shape.types()})) "
        f"to '{previous}' (format parquet, compression snappy)"
    )
    con.close()
    return day1, day2


def floor(shape: Shape, csv: str, previous: str, dest: str) -> int:
    """The bare DuckDB diff on the shape's key; returns the changed rows."""
    import duckdb

    names = [name for name, _, _ in shape.columns]
    joined = " and ".join(f'o."{k}" = n."{k}"' for k in shape.key)
    probe = shape.key[0]
    changed = " or ".join(f'o."{c}" is distinct from n."{c}"' for c in names if c not in shape.key)
    row = (
        duckdb.connect()
        .execute(
            f"""copy (
            select case when o."{probe}" is null then 'I' when n."{probe}" is null then 'D' else 'U' end as op, n.*
            from read_csv('{csv}', header=true, columns={shape.types()}) as n
            full outer join read_parquet('{previous}') as o on {joined}
            where o."{probe}" is null or n."{probe}" is null or {changed}
        ) to '{dest}' (format parquet, compression snappy)"""
        )
        .fetchone()
    )
    return int(row[0]) if row else 0


def _first_capture(shape: Shape, folder: Path, project: Path) -> Path:
    """A lake holding the capture of the first snapshot."""
    lake = folder / "lake_day1"
    if not (lake / "_ingestion").exists():
        shutil.rmtree(lake, ignore_errors=True)
        subprocess.run(
            [PYTHON, "-m", "ingestion", "run", "--lake", str(lake), "--from", "csv", "--path", str(folder / "day1"),
             "--source", SOURCE, "--tables", shape.table],
            cwd=ROOT, check=True, capture_output=True, env=_env(project),
        )  # fmt: skip
    return lake


def _env(project: Path) -> dict[str, str]:
    return {**os.environ, "LAGO_PROJECT_DIR": str(project)}


def suite_shapes(scales: list[int], repeats: int, work: Path) -> list[Result]:
    """Capture and floor of each shape, interleaved, at each scale up to LARGEST."""
    results: list[Result] = []
    project = declare(work / "capture_shapes")
    for rows in (r for r in scales if r <= LARGEST):
        for name, shape in SHAPES.items():
            folder = work / "capture_shapes" / f"{name}_{rows}"
            subprocess.run([PYTHON, "-m", "bench.capture_shapes", "generate", name, str(rows), str(folder)],
                           cwd=ROOT, check=True)  # fmt: skip
            base = _first_capture(shape, folder, project)
            lake = folder / "lake"

            def fresh_lake(base: Path = base, lake: Path = lake) -> None:
                shutil.rmtree(lake, ignore_errors=True)
                shutil.copytree(base, lake)

            capture = ["command", PYTHON, "-m", "ingestion", "run", "--lake", str(lake), "--from", "csv", "--path",
                       str(folder / "day2"), "--source", SOURCE, "--tables", shape.table]  # fmt: skip
            csv = str(folder / "day2" / f"{shape.table}.csv")
            floor_command = ["command", PYTHON, "-m", "bench.capture_shapes", "floor", name, csv,
                             str(folder / "previous.parquet"), str(folder / "floor.parquet")]  # fmt: skip
            cases: dict[str, tuple[list[str], Callable[[], None] | None]] = {
                f"capture, {shape.case}": (capture, fresh_lake),
                f"floor, {shape.case}": (floor_command, None),
            }
            cpu: dict[str, list[float]] = {case: [] for case in cases}
            seconds: dict[str, list[float]] = {case: [] for case in cases}
            rss: dict[str, list[float]] = {case: [] for case in cases}
            for _ in range(repeats):  # interleaved: each round runs every case once
                for case, (command, prepare) in cases.items():
                    figures = measure_figures(command, 1, prepare, {"LAGO_PROJECT_DIR": str(project)})
                    seconds[case].append(figures.seconds)
                    rss[case].append(figures.peak_rss_mb)
                    cpu[case].append(figures.cpu_seconds)
            found = _changes(folder, lake, shape)
            for case in cases:
                result = Result("capture", case, rows, statistics.median(seconds[case]),
                                statistics.median(rss[case]), repeats, found.get(case.split(",")[0], ""),
                                cpu_seconds=statistics.median(cpu[case]))  # fmt: skip
                results.append(result)
                print(f"capture {case:<28} {rows:>12,} rows  {result.seconds:8.2f} s  "
                      f"{result.peak_rss_mb:8.0f} MB", flush=True)  # fmt: skip
    return results


def _changes(folder: Path, lake: Path, shape: Shape) -> dict[str, str]:
    """The changes each case found, so the table shows they did the same work."""
    import duckdb

    found = {}
    written = sorted((lake / "raw" / SOURCE / "cdc" / shape.table).glob("*.parquet"))
    for case, path in (("capture", written[-1] if written else None), ("floor", folder / "floor.parquet")):
        if path is not None and path.exists():
            row = duckdb.execute(f"select count(*) from '{path}'").fetchone()
            found[case] = f"{row[0] if row else 0:,} changes"
    return found


def targets(results: list[Result]) -> list[str]:
    """Each shape's capture within 1.5x of its floor (wall seconds), from this run's figures."""
    lines = []
    for shape in SHAPES.values():
        for capture in (r for r in results if r.case == f"capture, {shape.case}"):
            floor_run = next((r for r in results if r.case == f"floor, {shape.case}" and r.rows == capture.rows), None)
            if floor_run is None:
                continue
            over = capture.seconds / floor_run.seconds
            lines.append(f"| CSV capture, {shape.case}, within 1.5x of its floor at {capture.rows:,} "
                         f"rows | {over:.2f}x | {'yes' if over <= 1.5 else 'no'} |")  # fmt: skip
    return lines


def main(argv: list[str]) -> int:
    command, name, *args = argv
    shape = SHAPES[name]
    if command == "generate":
        generate(shape, int(float(args[0])), Path(args[1]))
    elif command == "floor":
        floor(shape, *args)
    else:
        raise SystemExit(f"unknown command {command!r}: generate or floor")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
