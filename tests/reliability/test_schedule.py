"""`schedule`: a lock conflict skips one tick and the next one captures; Ctrl-C during `dbt build` stops cleanly
(dbt finishes its build, no traceback, exit 0) instead of reaching dbt; `--dbt-build` builds only what is downstream
of the tables that changed, and nothing when no capture changed anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from reliability_support import Recorder
from support.cli import Env, start_cli
from support.dbt import Dbt, copy_project

from ingestion.lake import LocalLake
from ingestion.lock import LOCK_KEY


def schedule(lake: str | Path, out: Path, *args: str, env: Env | None = None) -> subprocess.Popen[str]:
    """The schedule command; its stdout (and dbt's) goes to the file `out`, its stderr to a pipe. It leads its own
    process group: a Ctrl-C reaches it as a terminal sends one."""
    with out.open("w") as stdout:
        return start_cli(
            "schedule", "--lake", str(lake), "--source", "loyalty", *args, env=env, stdout=stdout, new_session=True
        )


def follow(process: subprocess.Popen[str], on_line: dict[str, threading.Event]) -> list[str]:
    """Collect stderr in a thread; set the event of every marker text once a line contains it."""
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            for text, event in on_line.items():
                if text in line:
                    event.set()

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_a_locked_tick_is_skipped_and_the_next_one_captures(tmp_path: Path, report: Recorder) -> None:
    lake_path = tmp_path / "lake"
    lake = LocalLake(lake_path)
    now = datetime.now(UTC)
    holder = {"run_id": "other", "pid": 1, "host": "elsewhere", "acquired_at": now.isoformat()}
    holder["expires_at"] = (now + timedelta(minutes=5)).isoformat()
    assert lake.create_exclusive(LOCK_KEY, json.dumps(holder).encode())
    skipped = threading.Event()
    process = schedule(lake_path, tmp_path / "out.txt", "--every", "1s", "--max-runs", "3", "--scale", "100")
    lines = follow(process, {"skipped": skipped})
    assert skipped.wait(60), "".join(lines)
    lake.delete(LOCK_KEY)  # the other run finished
    process.wait(timeout=120)
    time.sleep(0.2)
    text = "".join(lines)
    state = json.loads((lake_path / "_ingestion/loyalty/clientes/state.json").read_text())
    report.record(
        "schedule meets a locked lake at a tick",
        runs=3,
        note=f"exit {process.returncode}; {text.count('skipped')} tick(s) skipped, {len(state['captures'])} captured",
    )
    assert process.returncode == 0, text
    assert text.count("skipped") >= 1 and len(state["captures"]) >= 1


@pytest.mark.slow
@pytest.mark.dbt
def test_ctrl_c_during_dbt_build_stops_cleanly(tmp_path: Path, report: Recorder) -> None:
    site = Dbt.at(tmp_path)
    started = threading.Event()
    # the dbt build that schedule starts runs on the site: its project, warehouse and target folder
    process = schedule(
        site.lake, tmp_path / "out.txt", "--every", "1h", "--dbt-build", "--scale", "100", env=site.variables
    )
    lines = follow(process, {"running dbt build": started})
    assert started.wait(120), "".join(lines)
    time.sleep(2)  # dbt is parsing or building now
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    process.wait(timeout=600)
    time.sleep(0.2)
    stdout = (tmp_path / "out.txt").read_text()
    text = "".join(lines)
    report.record("Ctrl-C during schedule --dbt-build", runs=1, note=f"exit {process.returncode}")
    assert process.returncode == 0, text + stdout[-3000:]
    assert "Traceback" not in text + stdout
    assert "stopping after the current step" in text and "schedule stopped after 1 capture(s)" in text
    assert "Completed successfully" in stdout, stdout[-3000:]


CLIENTES_HEADER = "idCliente;flEmail;flTwitch;flYouTube;flBlueSky;flInstagram;qtdePontos;DtCriacao;DtAtualizacao\n"


def clientes_export(folder: Path, customers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"c{n};1;0;1;0;0;{10 * n};2024-01-01 10:00:00.000;2024-02-01 10:00:00.000\n" for n in range(customers)
    )
    (folder / "clientes.csv").write_text(CLIENTES_HEADER + rows, encoding="utf-8")


@pytest.mark.slow
@pytest.mark.dbt
def test_dbt_build_follows_the_captures_that_changed_something(tmp_path: Path, report: Recorder) -> None:
    """First tick: the whole project. A tick whose capture changed clientes: that table's downstream only. A tick
    whose capture changed nothing: no dbt at all. The warehouse follows the export each time.

    The builds run in one dbt process kept between them: between builds it holds no lock on the warehouse, and a
    model added to the project in the meantime is in the next build (the project is parsed again)."""
    site = Dbt.at(tmp_path, project=copy_project(tmp_path / "project"))
    export = tmp_path / "export"
    clientes_export(export, 2)
    built = threading.Event()
    process = schedule(
        site.lake,
        tmp_path / "out.txt",
        *("--from", "csv", "--path", str(export), "--tables", "clientes"),
        *("--every", "15s", "--max-runs", "3", "--dbt-build"),
        env=site.variables,
    )
    lines = follow(process, {"next capture in": built})
    assert built.wait(300), "".join(lines)
    clientes_export(export, 3)  # before the second tick: one new customer
    duckdb.connect(str(site.database)).close()  # a writer may open the warehouse between builds
    probe = "select count(*) as customers from {{ ref('silver_loyalty__customers') }}\n"
    (site.project / "models" / "schedule_probe.sql").write_text(probe, encoding="utf-8")
    process.wait(timeout=600)
    time.sleep(0.2)
    text = "".join(lines)
    stdout = (tmp_path / "out.txt").read_text()
    builds = [line.split("running ", 1)[1].strip() for line in lines if "running dbt build" in line]
    report.record("schedule --dbt-build selects by change", runs=3, note=f"exit {process.returncode}; {builds}")
    assert process.returncode == 0, text + stdout[-3000:]
    assert builds == [
        "dbt build --target dev --exclude-resource-type unit_test",
        "dbt build --target dev --exclude-resource-type unit_test --select source:loyalty.clientes+",
    ], text
    assert "no capture changed anything since the last dbt build: nothing to build" in text, text
    assert site.query("select count(*) from bronze.bronze_loyalty__clientes") == [(3,)]
    assert site.query("select count(*) from silver.silver_loyalty__customers") == [(3,)]
    # the model added after the first build was parsed and built by the second
    [(schema,)] = site.query("select table_schema from information_schema.tables where table_name = 'schedule_probe'")
    assert site.query(f"select customers from {schema}.schedule_probe") == [(3,)]
    # the second build ran clientes' lineage only: no other table's Bronze model was in it
    first, second = stdout.split("Running with dbt=")[1:]
    assert "bronze_loyalty__produtos" in first and "bronze_loyalty__clientes" in second, stdout[-3000:]
    assert "bronze_loyalty__produtos" not in second, second[-3000:]
