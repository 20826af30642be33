"""The CSV capture against the engine under it and against the tool it replaces, whole processes side by side.

Two CSV snapshots of a `clientes`-like table (9 columns, `;`-separated): the second has 1% of the rows updated
(points and update time), 0.5% inserted and 0.5% deleted. The lake already holds the first capture; each run
captures the second into a fresh copy of that lake. Three processes are timed, interleaved run by run:

- `capture`: `python -m ingestion run --from csv --path DAY2 --tables clientes`, the whole command;
- `floor`: a bare DuckDB script (`python -m bench.capture floor`): read the CSV, full outer join with the previous
  snapshot's Parquet on the key, IS DISTINCT FROM on every column, write the changed rows (no checks, no
  sequences, no state, no snapshot kept for the next run);
- `floor, key + row hash`: the same, comparing a stored key and row hash of the previous snapshot instead of
  every column (the alternative to storing the whole snapshot);
- `reference`: the pandas pipeline of the tool the project replaces (cdc-kaggle): both CSVs read with pandas,
  updates found by a left merge on the key where the date field grew, inserts and deletes by key membership,
  the changes written to Parquet (`python -m bench.capture reference`).

Also measured: the capture's fixed cost (`--help`, `status` and the capture of a 100-row table).

    python -m bench --suites capture --scales 1e6,1e7        (with the other suites' report)
    python -m bench.capture generate ROWS FOLDER     (the two CSV snapshots, the first capture, the floors' inputs)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, Result, measure

TABLE = "clientes"
KEY = "idCliente"
DATE_FIELD = "DtAtualizacao"
COLUMNS = [
    ("idCliente", "varchar"),
    ("flEmail", "integer"),
    ("flTwitch", "integer"),
    ("flYouTube", "integer"),
    ("flBlueSky", "integer"),
    ("flInstagram", "integer"),
    ("qtdePontos", "bigint"),
    ("DtCriacao", "varchar"),
    ("DtAtualizacao", "varchar"),
]


def generate(rows: int, folder: Path) -> tuple[Path, Path]:
    """`day1/clientes.csv` and `day2/clientes.csv` under `folder` (kept between runs of the bench)."""
    import duckdb

    day1, day2 = folder / "day1" / f"{TABLE}.csv", folder / "day2" / f"{TABLE}.csv"
    if day1.exists() and day2.exists():
        return day1, day2
    for path in (day1, day2):
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    rows_sql = f"""
        select md5('c' || i) as idCliente,
            (i % 2)::int as flEmail, (i % 3 = 0)::int as flTwitch, (i % 5 = 0)::int as flYouTube,
            (i % 7 = 0)::int as flBlueSky, (i % 11 = 0)::int as flInstagram,
            (i * 37 % 100000)::bigint as qtdePontos,
            strftime(timestamp '2024-01-01' + to_seconds(i % 30000000), '%Y-%m-%d %H:%M:%S.000') as DtCriacao,
            strftime(timestamp '2024-06-01' + to_seconds(i % 20000000), '%Y-%m-%d %H:%M:%S.000') as DtAtualizacao,
            i
        from range({rows}) as t(i)"""
    options = "(header, delimiter ';')"
    con.execute(f"copy (select * exclude (i) from ({rows_sql})) to '{day1}' {options}")
    later = "'2026-11-30 12:00:00.000'"
    con.execute(
        f"""copy (
            select * exclude (i) replace (
                case when i % 100 = 1 then qtdePontos + 1 else qtdePontos end as qtdePontos,
                case when i % 100 = 1 then {later} else DtAtualizacao end as DtAtualizacao)
            from ({rows_sql}) where i % 200 <> 3
            union all
            select * exclude (i) replace (md5('new' || i) as idCliente, {later} as DtAtualizacao)
            from ({rows_sql}) where i % 200 = 7
        ) to '{day2}' {options}"""
    )
    con.close()
    return day1, day2


def floor(csv: str, previous: str, dest: str) -> int:
    """The bare DuckDB diff (see the module's docstring); returns the changed rows."""
    import duckdb

    con = duckdb.connect()
    changed = " or ".join(f'o."{c}" is distinct from n."{c}"' for c, _ in COLUMNS if c != KEY)
    types = "{" + ", ".join(f"'{c}': '{t}'" for c, t in COLUMNS) + "}"
    row = con.execute(
        f"""copy (
            select case when o.{KEY} is null then 'I' when n.{KEY} is null then 'D' else 'U' end as op, n.*
            from read_csv('{csv}', delim=';', header=true, columns={types}) as n
            full outer join read_parquet('{previous}') as o on o.{KEY} = n.{KEY}
            where o.{KEY} is null or n.{KEY} is null or {changed}
        ) to '{dest}' (format parquet, compression snappy)"""
    ).fetchone()
    return int(row[0]) if row else 0


def floor_hash(csv: str, previous: str, dest: str) -> int:
    """The floor against a previous snapshot stored as key and row hash (`previous` holds `_row_hash`)."""
    import duckdb

    con = duckdb.connect()
    types = "{" + ", ".join(f"'{c}': '{t}'" for c, t in COLUMNS) + "}"
    row_hash = "hash(" + ", ".join(f'n."{c}"' for c, _ in COLUMNS if c != KEY) + ")"
    row = con.execute(
        f"""copy (
            select case when o.{KEY} is null then 'I' when n.{KEY} is null then 'D' else 'U' end as op,
                coalesce(n.{KEY}, o.{KEY}) as {KEY}, n.* exclude ({KEY})
            from (select *, {row_hash} as _row_hash
                  from read_csv('{csv}', delim=';', header=true, columns={types}) as n) as n
            full outer join read_parquet('{previous}') as o on o.{KEY} = n.{KEY}
            where o.{KEY} is null or n.{KEY} is null or o._row_hash <> n._row_hash
        ) to '{dest}' (format parquet, compression snappy)"""
    ).fetchone()
    return int(row[0]) if row else 0


def reference(last: str, actual: str, dest: str) -> int:
    """The reference tool's algorithm in pandas: a left merge of the last snapshot with the current one on the
    key; a row is an update when its date field is later in the current one; inserts are current keys not in
    the last snapshot, deletes the reverse; the three are concatenated and written to Parquet."""
    import pandas as pd

    before = pd.read_csv(last, sep=";")
    after = pd.read_csv(actual, sep=";")
    merged = before.merge(after, how="left", on=[KEY], suffixes=("_x", "_y"))
    later = merged[f"{DATE_FIELD}_y"] > merged[f"{DATE_FIELD}_x"]
    updated = after[after[KEY].isin(merged.loc[later, KEY].tolist())].copy()
    updated["op"] = "U"
    inserted = after[~after[KEY].isin(before[KEY])].copy()
    inserted["op"] = "I"
    deleted = before[~before[KEY].isin(after[KEY])].copy()
    deleted["op"] = "D"
    changes = pd.concat([updated, inserted, deleted], ignore_index=True)
    changes.to_parquet(dest, compression="snappy", index=False)
    return len(changes)


def _capture_command(lake: Path, csv_folder: Path) -> list[str]:
    """The measured command: the whole CSV capture of the table, as a user types it."""
    return ["command", PYTHON, "-m", "ingestion", "run", "--lake", str(lake), "--from", "csv", "--path",
            str(csv_folder), "--tables", TABLE]  # fmt: skip


def _lake_reset(base: Path, lake: Path) -> Callable[[], None]:
    """Before each run: `lake` as a fresh copy of the lake holding only the first capture."""

    def reset() -> None:
        shutil.rmtree(lake, ignore_errors=True)
        shutil.copytree(base, lake)

    return reset


def _prepare(rows: int, folder: Path) -> Path:
    """The CSVs, the first capture and the floors' previous snapshots, in a process of their own: the runner
    stays small, since a child's peak RSS starts from its parent's."""
    subprocess.run([PYTHON, "-m", "bench.capture", "generate", str(rows), str(folder)], cwd=ROOT, check=True)
    return folder / "lake_day1"


def _first_capture(folder: Path, day1: Path) -> Path:
    """A lake holding the first capture, and beside it the plain Parquet snapshot the floor diffs against."""
    lake = folder / "lake_day1"
    if not (lake / "_ingestion").exists():
        shutil.rmtree(lake, ignore_errors=True)
        command = [PYTHON, "-m", "ingestion", "run", "--lake", str(lake), "--from", "csv", "--path",
                   str(day1.parent), "--tables", TABLE]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    previous, hashed = folder / "previous.parquet", folder / "previous_hash.parquet"
    if not previous.exists() or not hashed.exists():
        import duckdb

        types = "{" + ", ".join(f"'{c}': '{t}'" for c, t in COLUMNS) + "}"
        duckdb.execute(
            f"copy (select * from read_csv('{day1}', delim=';', header=true, columns={types})) "
            f"to '{previous}' (format parquet, compression snappy)"
        )
        row_hash = "hash(" + ", ".join(f'"{c}"' for c, _ in COLUMNS if c != KEY) + ")"
        duckdb.execute(
            f"copy (select {KEY}, {row_hash} as _row_hash from '{previous}') "
            f"to '{hashed}' (format parquet, compression snappy)"
        )
    return lake


def suite_capture(
    scales: list[int], repeats: int, work: Path, reference_max: int, fixed_costs: bool = True
) -> list[Result]:
    results: list[Result] = []
    for rows in scales:
        folder = work / f"capture_{rows}"
        base = _prepare(rows, folder)
        day1, day2 = folder / "day1" / f"{TABLE}.csv", folder / "day2" / f"{TABLE}.csv"
        lake = folder / "lake"
        fresh_lake = _lake_reset(base, lake)

        cases: dict[str, tuple[list[str], Callable[[], None] | None]] = {
            "capture": (_capture_command(lake, day2.parent), fresh_lake),
            "floor": (
                [
                    "command",
                    PYTHON,
                    "-m",
                    "bench.capture",
                    "floor",
                    str(day2),
                    str(folder / "previous.parquet"),
                    str(folder / "floor.parquet"),
                ],
                None,
            ),
            "floor, key + row hash": (
                [
                    "command",
                    PYTHON,
                    "-m",
                    "bench.capture",
                    "floor-hash",
                    str(day2),
                    str(folder / "previous_hash.parquet"),
                    str(folder / "floor_hash.parquet"),
                ],
                None,
            ),
        }
        if rows <= reference_max:
            cases["reference"] = (
                ["command", PYTHON, "-m", "bench.capture", "reference", str(day1), str(day2),
                 str(folder / "reference.parquet")],
                None,
            )  # fmt: skip
        seconds: dict[str, list[float]] = {case: [] for case in cases}
        rss: dict[str, list[float]] = {case: [] for case in cases}
        for _ in range(repeats):  # interleaved: each round runs every case once
            for case, (command, prepare) in cases.items():
                took, peak, _, _ = measure(command, 1, prepare=prepare)
                seconds[case].append(took)
                rss[case].append(peak)
        changed = _changed_rows(folder, lake)
        for case in cases:
            median = statistics.median(seconds[case])
            peak = statistics.median(rss[case])
            results.append(Result("capture", case, rows, median, peak, repeats, changed.get(case, "")))
            print(f"capture {case:<10} {rows:>12,} rows  {median:8.2f} s  {peak:8.0f} MB", flush=True)
        if rows > reference_max:
            results.append(
                Result("capture", "reference", rows, float("nan"), float("nan"), 0, f"not run above {reference_max:,}")
            )
    if fixed_costs:
        results += _fixed_costs(work, repeats)
    return results


def _changed_rows(folder: Path, lake: Path) -> dict[str, str]:
    """What each case found, so the table shows they did the same work."""
    import duckdb

    found = {}
    changes = sorted((lake / "raw" / "loyalty" / "cdc" / TABLE).glob("*.parquet"))
    if changes:
        found["capture"] = f"{_rows(duckdb, changes[-1]):,} changes"
    for case, name in (("floor", "floor"), ("floor, key + row hash", "floor_hash"), ("reference", "reference")):
        path = folder / f"{name}.parquet"
        if path.exists():
            found[case] = f"{_rows(duckdb, path):,} changes"
    return found


def _rows(duckdb: Any, path: Path) -> int:
    row = duckdb.execute(f"select count(*) from '{path}'").fetchone()
    return int(row[0]) if row else 0


def _fixed_costs(work: Path, repeats: int) -> list[Result]:
    """What any capture costs before its data: start-up, reading the state, a 100-row table."""
    folder = work / "capture_fixed"
    lake = folder / "lake"
    base = _prepare(100, folder)
    fresh_lake = _lake_reset(base, lake)

    commands: dict[str, tuple[list[str], Callable[[], None] | None]] = {
        "fixed: --help": (["command", PYTHON, "-m", "ingestion", "--help"], None),
        "fixed: status": (["command", PYTHON, "-m", "ingestion", "status", "--lake", str(base)], None),
        "fixed: capture of 100 rows": (_capture_command(lake, folder / "day2"), fresh_lake),
    }
    results = []
    for case, (command, prepare) in commands.items():
        took, peak, _, _ = measure(command, max(repeats, 3), prepare=prepare)
        results.append(Result("capture", case, 100, took, peak, max(repeats, 3)))
        print(f"capture {case:<28} {took:6.2f} s  {peak:6.0f} MB", flush=True)
    return results


def targets(results: list[Result]) -> list[str]:
    """The capture targets, from this run's figures (reported, never asserted)."""

    def find(case: str, rows: int) -> Result | None:
        for r in results:
            if r.suite == "capture" and r.case == case and r.rows == rows and r.seconds == r.seconds:
                return r
        return None

    lines = []
    for rows, speedup in ((1_000_000, 5), (10_000_000, 10)):
        capture, floor_run, ref = find("capture", rows), find("floor", rows), find("reference", rows)
        if capture and floor_run:
            over = capture.seconds / floor_run.seconds
            lines.append(f"| CSV capture within 1.5x of the bare DuckDB floor at {rows:,} rows | {over:.2f}x | "
                         f"{'yes' if over <= 1.5 else 'no'} |")  # fmt: skip
            memory = capture.peak_rss_mb / floor_run.peak_rss_mb
            lines.append(f"| CSV capture peak memory within 1.3x of the floor's at {rows:,} rows | {memory:.2f}x "
                         f"({capture.peak_rss_mb:.0f} vs {floor_run.peak_rss_mb:.0f} MB) | "
                         f"{'yes' if memory <= 1.3 else 'no'} |")  # fmt: skip
        if capture and ref:
            faster = ref.seconds / capture.seconds
            lines.append(f"| CSV capture >= {speedup}x faster than the reference tool at {rows:,} rows | "
                         f"{faster:.1f}x | {'yes' if faster >= speedup else 'no'} |")  # fmt: skip
    return lines


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "generate":
        day1, _ = generate(int(float(args[0])), Path(args[1]))
        _first_capture(Path(args[1]), day1)
    elif command == "floor":
        floor(*args)
    elif command == "floor-hash":
        floor_hash(*args)
    elif command == "reference":
        reference(*args)
    else:
        raise SystemExit(f"unknown command {command!r}: generate, floor, floor-hash or reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
