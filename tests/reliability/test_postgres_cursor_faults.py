"""Cursor mode under the faults that break naive cursors, each a line of the reliability report: a transaction held
open across captures that commits rows whose cursor is below everything those captures read, and an application
that takes its cursor value from its own clock before its transaction starts (covered by `meta.cursor_lag`). The
truth is the database itself, compared with the lake's replayed change log by `verify` (row for row); a capture
asked for cursor mode on a table without a cursor column is refused, naming it, with the lake unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from pgserver import PostgresCluster, fresh_database
from reliability_support import LocalView, Recorder, fingerprint, ingest
from support.cli import run_cli

SHOP = ("--source", "shop", "--from", "postgres")
SIGKILLED = -9
DDL = """
create table public.items (id integer primary key, name text, updated_at timestamptz default now());
create index on public.items (updated_at);
insert into public.items (id, name) select i, 'item ' || i from generate_series(1, 30) as i;
"""


def project(folder: Path, **meta: object) -> Path:
    """A project declaring the one table `shop.items`, captured in cursor mode (with `meta` added)."""
    table = {
        "name": "items",
        "meta": {"primary_key": ["id"], "database_mode": "cursor", "cursor_column": "updated_at", **meta},
        "columns": [
            {"name": "id", "data_type": "integer"},
            {"name": "name", "data_type": "varchar"},
            {"name": "updated_at", "data_type": "timestamp"},
        ],
    }
    path = folder / "models" / "bronze" / "shop" / "_shop__sources.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"version": 2, "sources": [{"name": "shop", "tables": [table]}]}))
    return folder


def capture(lake: Path, dsn: str, where: Path) -> None:
    ingest(lake, *SHOP, env={"LAGO_PROJECT_DIR": str(where), "LAGO_POSTGRES_DSN": dsn}, check=True)


def receipt(lake: Path, dsn: str, where: Path) -> tuple[int, str]:
    """`verify`'s exit and output for the table."""
    result = run_cli(
        "verify", "shop.items", "--lake", str(lake), env={"LAGO_PROJECT_DIR": str(where), "LAGO_POSTGRES_DSN": dsn}
    )
    return result.returncode, result.stdout + result.stderr[-1500:]


def lost_rows(output: str) -> int:
    """Rows of the source the lake lacks or holds in another version, from verify's summary line."""
    line = next(line for line in output.splitlines() if line.startswith("shop.items: "))
    if ": equal, " in line:
        return 0
    counts = line.split("; ", 1)[1]
    return sum(int(part.split()[0]) for part in counts.split(", ") if "missing in source" not in part)


def test_a_transaction_open_across_captures_loses_nothing(
    postgres_server: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    dsn = fresh_database(postgres_server, "long_open")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)  # type: ignore[arg-type]
    where, lake = project(tmp_path / "project"), tmp_path / "lake"
    capture(lake, dsn, where)
    held = psycopg.connect(dsn)  # its now() is fixed here, before every row the next captures read
    held.execute("insert into public.items (id, name) values (500, 'held open')")
    held.execute("update public.items set name = 'held update', updated_at = now() where id = 2")
    for i in range(3):  # other writers commit, captures run, the held transaction stays open
        with psycopg.connect(dsn) as conn:
            conn.execute("insert into public.items (id, name) values (%s, 'meanwhile')", (600 + i,))
            conn.execute("update public.items set name = %s, updated_at = now() where id = 3", (f"meanwhile {i}",))
        capture(lake, dsn, where)
    held.commit()
    held.close()
    capture(lake, dsn, where)
    code, output = receipt(lake, dsn, where)
    lost = lost_rows(output)
    report.record(
        "postgres cursor: a transaction open across 3 captures commits rows below their cursor",
        runs=5,
        expected=30 + 1 + 3,
        lost=lost,
        note=output.splitlines()[0][:110],
    )
    assert code == 0 and lost == 0, output


@pytest.mark.parametrize("lag", [0, 120], ids=["no lag declared", "cursor_lag 2m"])
def test_an_application_clock_needs_its_lag(
    lag: int, postgres_server: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    """The application reads its clock, then works for a minute before its transaction starts: its value is older
    than the database's clock says any open transaction is. Declared, `cursor_lag` keeps it in the window."""
    dsn = fresh_database(postgres_server, "app_clock")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)  # type: ignore[arg-type]
    where, lake = project(tmp_path / "project", cursor_lag=lag), tmp_path / "lake"
    capture(lake, dsn, where)
    taken = datetime.now(UTC) - timedelta(minutes=1)  # the application's value, a minute before its transaction
    capture(lake, dsn, where)  # the mark moves up to the highest value, later than `taken`
    with psycopg.connect(dsn) as conn:
        conn.execute("insert into public.items values (700, 'app clock', %s)", (taken,))
    capture(lake, dsn, where)
    code, output = receipt(lake, dsn, where)
    lost = lost_rows(output)
    if not lag:  # why the lag is declared: without it this row is below every later window (not a report line)
        assert code == 1 and lost == 1 and "missing in lake: id=700" in output, output
        return
    report.record(
        "postgres cursor: an application's clock a minute behind, cursor_lag 2m",
        runs=3,
        expected=31,
        lost=lost,
        note=output.splitlines()[0][:110],
    )
    assert code == 0 and lost == 0, output


def test_mode_cursor_without_a_cursor_column_is_refused(
    postgres_server: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    dsn = fresh_database(postgres_server, "no_cursor")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)  # type: ignore[arg-type]
    where, lake = project(tmp_path / "project"), tmp_path / "lake"
    capture(lake, dsn, where)
    document = where / "models" / "bronze" / "shop" / "_shop__sources.yml"
    declared = yaml.safe_load(document.read_text())
    meta = declared["sources"][0]["tables"][0]["meta"]
    del meta["cursor_column"], meta["database_mode"]
    document.write_text(yaml.safe_dump(declared))
    before = fingerprint(LocalView(lake))
    result = ingest(lake, *SHOP, "--mode", "cursor", env={"LAGO_PROJECT_DIR": str(where), "LAGO_POSTGRES_DSN": dsn})
    message = next((line for line in result.stderr.splitlines() if " ERROR " in line), result.stderr[-300:])
    report.record(
        "postgres cursor: --mode cursor on a table without a cursor column",
        runs=1,
        note=f"exit {result.returncode}: {message.split(' ERROR ', 1)[-1][:100]}",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "table shop.items: --mode cursor needs the table's cursor column" in result.stderr
    assert fingerprint(LocalView(lake)) == before


@pytest.mark.parametrize("failpoint", ["after-pending", "after-publish", "after-state"])
def test_a_cursor_capture_killed_then_run_again_loses_nothing(
    failpoint: str, postgres_server: PostgresCluster, tmp_path: Path, report: Recorder
) -> None:
    """The window moves with the capture's record, committed or completed with it: a capture killed at a step of
    publishing, then run again, leaves the lake equal to the database, and the window where the capture put it."""
    dsn = fresh_database(postgres_server, "cursor_crash")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)  # type: ignore[arg-type]
    where, lake = project(tmp_path / "project", cursor_key_scan=1), tmp_path / "lake"
    capture(lake, dsn, where)
    with psycopg.connect(dsn) as conn:
        conn.execute("update public.items set name = 'moved', updated_at = now() where id in (1, 2)")
        conn.execute("delete from public.items where id = 3")
        conn.execute("insert into public.items (id, name) values (800, 'new')")
    env = {"LAGO_PROJECT_DIR": str(where), "LAGO_POSTGRES_DSN": dsn, "LAGO_FAILPOINT": failpoint}
    assert ingest(lake, *SHOP, env=env).returncode == SIGKILLED
    capture(lake, dsn, where)
    code, output = receipt(lake, dsn, where)
    lost = lost_rows(output)
    state = yaml.safe_load((lake / "_ingestion" / "shop" / "items" / "state.json").read_text())
    windows = [c.get("reader_state") for c in state["captures"]]
    report.record(
        f"postgres cursor: SIGKILL {failpoint}, then the next run", runs=2, expected=30, lost=lost, note=output[:110]
    )
    assert code == 0 and lost == 0, output
    assert all(w is not None and w["kind"] == "cursor" for w in windows), windows
    assert sum(c["inserts"] + c["updates"] + c["deletes"] for c in state["captures"][1:]) == 4
