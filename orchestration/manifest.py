"""The manifest the Dagster definitions are built from: made again only when the project changed since it.

`dg` marks itself and every process it starts as a development one (DAGSTER_IS_DEV_CLI), and dagster-dbt then
prepares the project on every load of the definitions: `dbt --version`, `dbt deps`, `dbt --version` again and
`dbt parse`, about 15 s here, in `dg launch`'s own process and again in each step's process, in each `dg list defs`
and on each run under `dg dev`. The manifest only shapes the asset graph (the `dbt build` of a run parses for
itself, with dbt's partial parsing), so it is made again when a file dbt parses is newer than it, when a file or
folder was added or removed there (its folder's time moves), or when it was made for another target; and then with
`dbt parse` alone, `dbt deps` first only when a package is missing or the package files changed since they were
installed.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from dagster_dbt import DbtProject

from ingestion.dbt_packages import dbt_executable, missing_packages

# beside the manifest: the target it was made for, and the lock of the processes making it
PREPARED_FOR = "lago_prepared_for.json"
PREPARING_LOCK = "lago_preparing.lock"
# what `dbt deps` installs from
PACKAGE_FILES = ("packages.yml", "dependencies.yml", "package-lock.yml")
# the project's files dbt reads when it parses, besides its folders
PROJECT_FILES = ("dbt_project.yml", *PACKAGE_FILES, "selectors.yml")
# dbt's default folders, where dbt_project.yml names none
DEFAULT_FOLDERS = {
    "model-paths": ["models"],
    "macro-paths": ["macros"],
    "seed-paths": ["seeds"],
    "snapshot-paths": ["snapshots"],
    "test-paths": ["tests"],
    "analysis-paths": ["analyses"],
    "docs-paths": [],
}


def parse_inputs(project_dir: Path, profiles_dir: Path) -> Iterator[Path]:
    """Every file and folder `dbt parse` of the project reads: the project's, each installed package's (a local
    package is a link, followed), the packages folder itself and the profile. A path that is not there is left out
    by the caller."""
    yield from _project_inputs(project_dir)
    yield profiles_dir / "profiles.yml"
    packages = project_dir / (_config(project_dir).get("packages-install-path") or "dbt_packages")
    yield packages
    if packages.is_dir():
        for package in sorted(packages.iterdir()):
            if (package / "dbt_project.yml").is_file():
                yield from _project_inputs(package)


def _config(project_dir: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def _project_inputs(project_dir: Path) -> Iterator[Path]:
    """A project's own files and the files and folders under the folders its dbt_project.yml names."""
    config = _config(project_dir)
    for name in PROJECT_FILES:
        yield project_dir / name
    seen: set[str] = set()  # a link back up a folder would make the walk endless
    for key, default in DEFAULT_FOLDERS.items():
        for folder in config.get(key) or default:
            for root, folders, files in os.walk(project_dir / folder, followlinks=True):
                real = os.path.realpath(root)
                if real in seen:
                    folders.clear()
                    continue
                seen.add(real)
                yield Path(root)
                yield from (Path(root) / name for name in files)


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
    installed = project_dir / (_config(project_dir).get("packages-install-path") or "dbt_packages")
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
