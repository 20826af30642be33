"""The one way tests run dbt: the project's `dbt` on one lake and one DuckDB file, its artefacts in a test folder.

A `Dbt` names everything a dbt command depends on (the project, the target, LAKE_URI, DUCKDB_PATH, the target and
log folders) and puts it in the environment of the commands it runs, so a process under test that runs dbt itself
(`schedule --dbt-build`) gets the same site from `Dbt.variables`. Nothing of the caller's own dbt set-up (`DBT_*`
variables) reaches it.

dbt parses the whole project when its target folder holds no parse yet, then only the files that changed: the
tests that share one `Dbt` (pointed at their own lakes with `point_at` or `on_lake`) share its parse.

The project's unit tests (dbt `unit_tests`) check its SQL on fixed rows, whatever the lake holds: one build per
engine runs them (`unit_tests=True`), and every other command of a site leaves them out (each costs a query, on
Spark seconds). Commands a test starts itself (`command`, `env`, `variables`) run as a user's would, unit tests
included. A site's own commands on DuckDB are processes forked from one that imported dbt already (`dbt_fork`).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from ingestion.dbt_packages import dbt_executable as installed_dbt
from ingestion.dbt_packages import ensure_installed

from .cli import environment
from .dbt_fork import run_dbt

ROOT = Path(__file__).resolve().parents[2]
DBT_TIMEOUT = 1800
# the dbt project's files, as a copy of the project needs them (docs/ holds the doc blocks the YAML refers to)
# (packages/ holds the CDC engine, a local dbt package listed in packages.yml)
PROJECT_FILES = (
    "dbt_project.yml",
    "packages.yml",
    "package-lock.yml",
    "packages",
    "profiles",
    "models",
    "macros",
    "seeds",
    "snapshots",
    "tests/dbt",
    "docs",
)


def dbt_executable() -> str:
    """The dbt installed beside this interpreter (the test extras'), else the first on PATH; an error if neither."""
    found = installed_dbt()
    if not Path(found).is_absolute():
        raise RuntimeError("dbt is not installed; install the test extras: pip install -e '.[test]'")
    return found


@dataclass(frozen=True)
class Dbt:
    """dbt on `project` with target `target`, reading `lake` into `database`, writing under `work`."""

    work: Path
    lake: str
    database: Path
    project: Path = ROOT
    target: str = "dev"
    # variables to set (a value) or to remove (None) on top of the site's environment
    env_changes: Mapping[str, str | None] = field(default_factory=dict)
    # whether this site's own commands run the project's unit tests (see the module's docstring)
    unit_tests: bool = False

    @classmethod
    def at(
        cls,
        work: Path,
        lake: str | Path | None = None,
        *,
        database: Path | None = None,
        project: Path = ROOT,
        target: str = "dev",
        env: Mapping[str, str | None] | None = None,
        unit_tests: bool = False,
    ) -> Dbt:
        """A site under `work`: target/, logs/, and by default the lake `work/lake` and `work/warehouse.duckdb`."""
        return cls(
            work=work,
            lake=str(work / "lake" if lake is None else lake),
            database=work / "warehouse.duckdb" if database is None else database,
            project=project,
            target=target,
            env_changes=dict(env or {}),
            unit_tests=unit_tests,
        )

    @property
    def target_path(self) -> Path:
        return self.work / "target"

    @property
    def log_path(self) -> Path:
        return self.work / "logs"

    @property
    def variables(self) -> dict[str, str | None]:
        """What this site changes in the caller's environment: a value sets a variable, None removes it (every
        `DBT_*` variable of the caller's). For a process under test that runs dbt: `run_cli(..., env=variables)`."""
        variables: dict[str, str | None] = {name: None for name in os.environ if name.startswith("DBT_")}
        variables |= {
            "LAKE_URI": self.lake,
            "DUCKDB_PATH": str(self.database),
            # DuckDB removes a temp folder it created when it closes: processes running side by side (parallel
            # test workers) must not share the project's default one
            "DUCKDB_TEMP_DIRECTORY": str(self.work / "duckdb_tmp"),
            "DBT_PROJECT_DIR": str(self.project),
            # the project's own profiles.yml is the one under test
            "DBT_PROFILES_DIR": str(self.project),
            "DBT_TARGET_PATH": str(self.target_path),
            "DBT_LOG_PATH": str(self.log_path),
            # logs/dbt.log at info, not dbt's debug: the debug file log writes out every statement, about 7% of a
            # small build's CPU over the suite's hundreds of builds; a test that reads it sets its own level
            "DBT_LOG_LEVEL_FILE": "info",
            # a process under test that runs `dbt` by name runs this one
            "PATH": os.pathsep.join([str(Path(dbt_executable()).parent), os.environ.get("PATH", os.defpath)]),
        }
        return variables | dict(self.env_changes)

    @property
    def env(self) -> dict[str, str]:
        """The environment of this site's commands, from os.environ when asked (a test's monkeypatched AWS_*
        variables are in it)."""
        return environment(self.variables)

    def command(self, *args: str) -> list[str]:
        """`dbt ARGS... --target TARGET`, for a process started by the test itself (with `env`)."""
        return [dbt_executable(), *args, "--target", self.target]

    def __call__(
        self, *args: str, check: bool = False, cwd: Path | None = None, timeout: float = DBT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Any dbt command (`site("debug")`, `site("docs", "generate")`); with `check`, a failure is an
        AssertionError showing the end of dbt's output."""
        env = self.env
        if not self.unit_tests:
            # dbt's own switch (`--exclude-resource-type`), read by the commands that select unit tests only
            env["DBT_EXCLUDE_RESOURCE_TYPES"] = "unit_test"
        lake_absolute = "://" in self.lake or Path(self.lake).is_absolute()
        in_project = cwd is None or cwd == self.project
        if in_project and lake_absolute and self.target == "dev" and self.database.is_relative_to(self.work):
            # Run in the site's folder with the warehouse named relative to it: every site's profile then reads the
            # same, and a parse of this project by an earlier site is a partial parse here (half the CPU of a full
            # one, which a changed warehouse path forces). Commands started by a test itself keep absolute paths.
            cwd = self.work
            cwd.mkdir(parents=True, exist_ok=True)
            env |= {
                "DUCKDB_PATH": self.database.relative_to(self.work).as_posix(),
                "DUCKDB_TEMP_DIRECTORY": "duckdb_tmp",
            }
            _PARSES.lend(self)
        if self.target in ("dev", "lake"):
            # DuckDB (the warehouse, or the lake's published tables): forked from a process that imported dbt
            # already (tests/support/dbt_fork.py)
            result = run_dbt(self.command(*args), cwd or self.project, env, timeout)
        else:
            # Spark and Databricks start their own engines' clients: plain processes
            result = subprocess.run(
                self.command(*args), cwd=cwd or self.project, env=env, capture_output=True, text=True, timeout=timeout
            )
        if cwd == self.work:
            _PARSES.keep(self)
        if check:
            assert result.returncode == 0, (
                f"dbt {' '.join(args)} exited {result.returncode}:\n{result.stdout[-6000:]}{result.stderr[-3000:]}"
            )
        return result

    def build(
        self, *args: str, check: bool = False, cwd: Path | None = None, timeout: float = DBT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return self("build", *args, check=check, cwd=cwd, timeout=timeout)

    def run(
        self, *args: str, check: bool = False, cwd: Path | None = None, timeout: float = DBT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return self("run", *args, check=check, cwd=cwd, timeout=timeout)

    def test(
        self, *args: str, check: bool = False, cwd: Path | None = None, timeout: float = DBT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return self("test", *args, check=check, cwd=cwd, timeout=timeout)

    def compile(
        self, *args: str, check: bool = False, cwd: Path | None = None, timeout: float = DBT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return self("compile", *args, check=check, cwd=cwd, timeout=timeout)

    def with_unit_tests(self) -> Dbt:
        """The same site, its commands running the project's unit tests too."""
        return replace(self, unit_tests=True)

    def on_lake(self, lake: str | Path) -> Dbt:
        """The same site (project, warehouse, target folder, so the same parse) reading another lake."""
        return replace(self, lake=str(lake))

    def point_at(self, lake: Path) -> None:
        """Serve the local folder `lake` under this site's unchanged LAKE_URI (a symbolic link), with an empty
        warehouse: dbt keeps its parse from one lake to the next."""
        link = Path(self.lake)
        lake.mkdir(parents=True, exist_ok=True)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(lake, target_is_directory=True)
        for leftover in self.database.parent.glob(f"{self.database.name}*"):
            leftover.unlink()

    def connect(self, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.database), read_only=read_only)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """The rows of one query on the warehouse, opened read-only for the query alone."""
        with self.connect() as con:
            rows: list[tuple[Any, ...]] = con.execute(sql, list(params)).fetchall()
        return rows

    def artifact(self, name: str) -> dict[str, Any]:
        """A JSON artefact of the last command: manifest.json, run_results.json, catalog.json."""
        loaded: dict[str, Any] = json.loads((self.target_path / name).read_text(encoding="utf-8"))
        return loaded


class _ParseCache:
    """dbt's partial-parse file of the first site of each project and target, lent to the sites that follow (dbt
    checks it against the project's files, profile and variables, and parses in full when it does not fit)."""

    NAME = "partial_parse.msgpack"

    def __init__(self) -> None:
        self._folder: Path | None = None

    def _saved(self, site: Dbt) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="dbt-parses-"))
            atexit.register(shutil.rmtree, self._folder, True)
        key = hashlib.sha256(f"{site.project.resolve()}|{site.target}".encode()).hexdigest()[:16]
        return self._folder / f"{key}.msgpack"

    def lend(self, site: Dbt) -> None:
        mine, saved = site.target_path / self.NAME, self._saved(site)
        if not mine.exists() and saved.exists():
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(saved, mine)

    def keep(self, site: Dbt) -> None:
        mine, saved = site.target_path / self.NAME, self._saved(site)
        if mine.exists() and not saved.exists():
            shutil.copyfile(mine, saved)


_PARSES = _ParseCache()


def copy_project(dest: Path, *, install_packages: bool = True) -> Path:
    """A copy of the dbt project to change (sources YAML, models) without touching the repository's, its packages
    installed by `dbt deps` unless the caller runs it as a newcomer would (`install_packages=False`)."""
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            # what dbt leaves in a project it ran in (a package's integration tests) is not the project; their
            # dbt_packages/ links back to the package holding them
            ignored = shutil.ignore_patterns("images", "__pycache__", "dbt_packages", "target", "logs")
            shutil.copytree(source, dest / name, ignore=ignored)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, dest / name)
    (dest / "profiles.yml").symlink_to(Path("profiles") / "profiles.yml")
    if install_packages:
        ensure_installed(dest, dbt_executable())
    return dest
