"""The manifest the Dagster definitions are built from: made again only when the project changed since it.

`dg` marks itself and every process it starts as a development one (DAGSTER_IS_DEV_CLI), and dagster-dbt then
prepares the project on every load of the definitions: `dbt --version`, `dbt deps`, `dbt --version` again and
`dbt parse`, about 15 s here, in `dg launch`'s own process and again in each step's process, in each `dg list defs`
and on each run under `dg dev`. The manifest only shapes the asset graph (the `dbt build` of a run parses for
itself, with dbt's partial parsing), so it is made again when a file dbt parses (ingestion/dbt_files.py) is newer
than it, when a file or folder was added or removed there (its folder's time moves), or when it was made for another
target; and then with `dbt parse` alone, `dbt deps` first only when a package is missing or the package files
changed since they were installed.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

from dagster_dbt import DbtProject

from ingestion.dbt_files import PACKAGE_FILES, packages_folder, parse_inputs
from ingestion.dbt_packages import dbt_executable, missing_packages

# beside the manifest: the target it was made for, and the lock of the processes making it
PREPARED_FOR = "lago_prepared_for.json"
PREPARING_LOCK = "lago_preparing.lock"


def _newest(paths: Iterator[Path]) -> float:
    newest = 0.0
    for path in paths:
        try:
            newest = max(newest, path.stat().st_mtime)
        except FileNotFoundError:
            continue
    return newest


def manifest_outdated(project: DbtProject) -> bool:
    """Whether the project's manifest is missing, prepared for another target, or older than what it parses."""
    try:
        prepared = project.manifest_path.stat().st_mtime
        recorded = json.loads((project.manifest_path.parent / PREPARED_FOR).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return True
    if recorded != {"target": project.target}:
        return True
    return _newest(parse_inputs(project.project_dir, project.profiles_dir)) > prepared


class ManifestError(RuntimeError):
    """`dbt deps` or `dbt parse` failed while making the manifest: `project` names the dbt project, `command` the
    dbt command, `detail` what dbt said."""

    def __init__(self, project: str, command: str, detail: str) -> None:
        self.project, self.command, self.detail = project, command, detail
        super().__init__(f"dbt project {project}: `dbt {command}` failed: {detail}")


def prepare(project: DbtProject) -> None:
    """Make the project's manifest with `dbt parse` (after `dbt deps` when packages_changed), then record the target
    it was made for. Processes loading the definitions side by side take turns on a lock beside the manifest, and
    the later ones find it made."""
    folder = project.manifest_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / PREPARING_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest_outdated(project):
            return
        (folder / PREPARED_FOR).unlink(missing_ok=True)
        if packages_changed(project.project_dir):
            _dbt(project, "deps")
        _dbt(project, "parse", "--quiet", "--target-path", str(folder), "--profiles-dir", str(project.profiles_dir),
             *(("--target", project.target) if project.target else ()))  # fmt: skip
        (folder / PREPARED_FOR).write_text(json.dumps({"target": project.target}), encoding="utf-8")


def packages_changed(project_dir: Path) -> bool:
    """Whether `dbt deps` must run: a local package is not linked, or a package file (packages.yml,
    dependencies.yml, package-lock.yml) is newer than the installed packages' folder."""
    if missing_packages(project_dir):
        return True
    installed = packages_folder(project_dir)
    files = [project_dir / name for name in PACKAGE_FILES if (project_dir / name).is_file()]
    if not files:
        return False
    return not installed.is_dir() or _newest(iter(files)) > installed.stat().st_mtime


def _dbt(project: DbtProject, command: str, *args: str) -> None:
    executable = dbt_executable()
    try:
        done = subprocess.run(
            [executable, command, *args, "--project-dir", str(project.project_dir)],
            cwd=project.project_dir,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise ManifestError(str(project.project_dir), command, f"cannot start {executable}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise ManifestError(str(project.project_dir), command, (done.stdout + done.stderr).strip()[-4000:])
