"""`python -m orchestration.local_postgres`, the README's local Postgres: start in the background, use, stop.

The printed line is evaluated by a shell's `eval`, the simulator's day is written into the database it names, a
capture reads it, `--stop` ends the server, and the next start finds the data where it was. The cluster's folder is
a fresh temporary one (as root, the server's own user must reach it, which pytest's private folders forbid).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support.cli import ROOT
from support.dbt import Dbt

from orchestration.local_s3 import pick_ports


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="lago-local-pg-"))
    try:
        yield folder
    finally:
        subprocess.run(
            [sys.executable, "-m", "orchestration.local_postgres", "--stop", "--dir", str(folder)],
            check=False,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(folder, ignore_errors=True)


def local_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestration.local_postgres", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def exported(line: str) -> dict[str, str]:
    words = shlex.split(line)
    assert words[0] == "export", line
    return dict(word.split("=", 1) for word in words[1:])


def test_a_local_postgres_in_one_command(cluster_dir: Path) -> None:
    port = pick_ports(1)[0]
    started = local_postgres("--background", "--dir", str(cluster_dir), "--port", str(port))
    assert started.returncode == 0, started.stderr
    lines = started.stdout.strip().splitlines()
    assert len(lines) == 1, started.stdout  # only the export line: `eval "$(...)"` must work
    dsn = exported(lines[0])["LAGO_POSTGRES_DSN"]
    assert dsn == f"postgresql://lago:lago-mago-local@127.0.0.1:{port}/loyalty"
    with psycopg.connect(dsn) as conn:
        tables = conn.execute("select tablename from pg_tables where schemaname = 'public' order by 1").fetchall()
        level = conn.execute("show wal_level").fetchone()
    assert [t[0] for t in tables] == ["clientes", "produtos", "transacao_produto", "transacoes"]
    assert level == ("logical",)

    again = local_postgres("--background", "--dir", str(cluster_dir), "--port", str(pick_ports(1)[0]))
    assert again.returncode == 1 and "--stop" in again.stderr

    stopped = local_postgres("--stop", "--dir", str(cluster_dir))
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
    assert local_postgres("--stop", "--dir", str(cluster_dir)).returncode == 1  # nothing left to stop

    # started again on the same folder: the cluster and its tables are kept
    restarted = local_postgres("--background", "--dir", str(cluster_dir), "--port", str(port))
    assert restarted.returncode == 0, restarted.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select count(*) from pg_tables where schemaname = 'public'").fetchone() == (4,)


def readme_block() -> list[str]:
    """The command lines of the README's Postgres block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Postgres as a source\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line.split("  #", 1)[0].rstrip() for line in block.group(1).strip().splitlines()]


@pytest.mark.dbt
def test_the_readme_block_builds_a_warehouse_from_postgres(cluster_dir: Path, tmp_path: Path) -> None:
    """The block as written, but for the install (the test's environment has the extra), a free port and a
    temporary cluster folder; it runs in a folder of its own, with the project's dbt."""
    lines = readme_block()
    install = "pip install -e '.[postgres]' && "
    assert lines[0].startswith(install) and lines[-1] == "python -m orchestration.local_postgres --stop", lines
    where = f"--dir {cluster_dir} --port {pick_ports(1)[0]}"
    typed = [lines[0].removeprefix(install).replace("--background", f"--background {where}"), *lines[1:-1]]
    typed.append(f"{lines[-1]} --dir {cluster_dir}")
    (tmp_path / "warehouse").mkdir()
    site = Dbt.at(tmp_path)
    env = {k: v for k, v in site.env.items() if k not in ("LAKE_URI", "DUCKDB_PATH", "LAGO_POSTGRES_DSN")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    script = "set -e\n" + "\n".join(typed)
    ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, f"{script}\n{ran.stdout[-4000:]}{ran.stderr[-3000:]}"
    warehouse = next((tmp_path / "warehouse").glob("*.duckdb"))
    with Dbt.at(tmp_path, database=warehouse).connect() as con:
        (customers,) = con.execute("select count(*) from bronze.bronze_loyalty__clientes").fetchall()[0]
        (silver,) = con.execute("select count(*) from silver.silver_loyalty__customers").fetchall()[0]
    # the simulator's second day at its default scale and seed (day 0's 10,000 customers, then day 1's sign-ups and
    # deletes; clientes captured by its cursor), through the database into Bronze and Silver; `verify` exited 0
    assert customers == silver == 10_049
