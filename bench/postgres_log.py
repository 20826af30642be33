"""Log mode against a bare decoder: `python -m bench.postgres_log [--rows 200000] [--out bench/results]`.

A throw-away Postgres (Debian's postgresql-15) holds the declared `produtos` table, followed in log mode. One
transaction inserts `--rows` rows and a second updates them all; then, each in a fresh process, the same changes
are read from two slots created before them:
- `capture`: `python -m ingestion run --from postgres --mode log` (decode, whole rows, typed change file,
  stored state, publish, commit, confirm);
- `bare`: the same pgoutput decoder writing the text values to Parquet and fsyncing it, nothing else.
Changes per second and each process's peak RSS are printed and written to `<out>/postgres_log.json`.

Then memory against transaction size (`--transactions 100000 1000000`): for each size, a database of its own
receives one transaction inserting that many rows, and a capture process reads it; its peak RSS is reported, with
the ratio of the largest to the smallest (a capture spills a transaction to local Parquet parts, so ~1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.catalog import load_catalog
from ingestion.postgres.pgoutput import Change, Commit, decode
from ingestion.postgres.replication import ReplicationStream, current_position, slot_name
from ingestion.postgres.schema import create_table
from orchestration.local_postgres import PostgresCluster, temporary_cluster

ROOT = Path(__file__).resolve().parent.parent
TABLE = load_catalog().source("loyalty").table("produtos")


def bare(dsn: str, slot: str, publication: str, out: Path) -> int:
    """Decode the slot up to the server's position into a Parquet file of text columns; the changes read."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        until = current_position(conn)
    stream = ReplicationStream(dsn, slot, publication)
    stream.start()
    columns: list[list[object]] = [[] for _ in range(len(TABLE.columns) + 1)]
    position = 0
    for item in stream.messages():
        if isinstance(item, tuple):
            message = decode(item[0])
            if isinstance(message, Change):
                columns[0].append(message.operation)
                for index, value in enumerate(message.values):
                    columns[index + 1].append(value if isinstance(value, str | None) else None)
            elif isinstance(message, Commit):
                position = message.end_lsn
        elif item is not None and item >= until:
            break
    names = ["op", *TABLE.column_names]
    pq.write_table(pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)}), out)
    with out.open("rb") as handle:
        os.fsync(handle.fileno())
    stream.confirm(position)
    stream.close()
    return len(columns[0])


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Seconds, peak RSS (MB) and stdout of a command run in a fresh process."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    assert process.stdout is not None and process.stderr is not None
    output, errors = process.stdout.read(), process.stderr.read()
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{errors[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, output


def memory_by_transaction(cluster: PostgresCluster, work: Path, sizes: list[int]) -> dict[str, object]:
    """Each size's capture of one transaction of that many inserted rows: seconds and peak RSS (MB)."""
    found: dict[str, dict[str, float]] = {}
    for rows in sizes:
        dsn = cluster.create_database(f"memory_{rows}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            create_table(conn, TABLE)
        env = {**os.environ, "LAGO_POSTGRES_DSN": dsn}
        capture = [sys.executable, "-m", "ingestion", "run", "--lake", str(work / f"memory-{rows}"), "--source"]
        capture += ["loyalty", "--from", "postgres", "--mode", "log", "--tables", "produtos"]
        timed(capture, env)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "insert into public.produtos select i, 'produto ' || i, repeat(md5(i::text), 3), 'chat' "
                "from generate_series(1, %s) as i",
                (rows,),
            )
        seconds, rss, _ = timed(capture, env)
        found[str(rows)] = {"seconds": round(seconds, 2), "peak_rss_mb": round(rss)}
        print(f"one transaction of {rows} rows: {seconds:.1f} s, peak RSS {rss:.0f} MB", file=sys.stderr)
    peaks = [found[str(rows)]["peak_rss_mb"] for rows in sorted(sizes)]
    return {"transactions": found, "peak_rss_largest_over_smallest": round(peaks[-1] / peaks[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres_log", description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--transactions", type=int, nargs="*", default=[100_000, 1_000_000], metavar="ROWS")
    parser.add_argument("--bare", nargs=4, metavar=("DSN", "SLOT", "PUBLICATION", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        dsn, slot, publication, out = args.bare
        print(bare(dsn, slot, publication, Path(out)))
        return 0

    cluster = temporary_cluster()
    cluster.start()
    work = Path(tempfile.mkdtemp(prefix="lago-bench-log-"))
    try:
        dsn = cluster.create_database("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            create_table(conn, TABLE)
        lake = work / "lake"
        env = {**os.environ, "LAGO_POSTGRES_DSN": dsn}
        capture = [sys.executable, "-m", "ingestion", "run", "--lake", str(lake), "--source", "loyalty"]
        capture += ["--from", "postgres", "--mode", "log", "--tables", "produtos"]
        timed(capture, env)  # the slot, the publication, an empty full load
        lake_id = json.loads((lake / "_ingestion" / "lake.json").read_text())["lake_id"]
        publication = slot_name(lake_id, "loyalty")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("select pg_create_logical_replication_slot('bare', 'pgoutput')")
            conn.execute(
                "insert into public.produtos select i, 'produto ' || i, repeat(md5(i::text), 3), 'chat' "
                "from generate_series(1, %s) as i",
                (args.rows,),
            )
            conn.execute("update public.produtos set \"DescCategoriaProduto\" = 'rpg'")
        changes = 2 * args.rows
        results = {}
        bare_out = work / "bare.parquet"
        bare_command = [sys.executable, "-m", "bench.postgres_log", "--bare", dsn, "bare", publication, str(bare_out)]
        seconds, rss, output = timed(bare_command)
        assert int(output) == changes, output
        results["bare"] = {
            "seconds": round(seconds, 2),
            "changes_per_second": round(changes / seconds),
            "peak_rss_mb": round(rss),
        }
        seconds, rss, _ = timed(capture, env)
        results["capture"] = {
            "seconds": round(seconds, 2),
            "changes_per_second": round(changes / seconds),
            "peak_rss_mb": round(rss),
        }
        ratio = results["capture"]["seconds"] / results["bare"]["seconds"]
        document = {
            "changes": changes,
            "transaction_rows": args.rows,
            "results": results,
            "capture_over_bare": round(ratio, 2),
        }
        if args.transactions:
            document["memory"] = memory_by_transaction(cluster, work, args.transactions)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "postgres_log.json").write_text(json.dumps(document, indent=1) + "\n")
        print(json.dumps(document, indent=1))
    finally:
        cluster.stop(graceful=False)
        shutil.rmtree(cluster.workdir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
