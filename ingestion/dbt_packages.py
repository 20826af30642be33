"""The dbt project's local packages (the `local:` entries of `packages.yml`, e.g. the CDC engine), installed as
`dbt deps` installs them: a link `dbt_packages/<name>` (or under the project's `packages-install-path`) to the
package's folder.

dbt refuses to parse a project whose packages are not installed. The quick start runs `dbt deps` once; what runs
dbt for a user without a shell in between (the scheduler's `--dbt-build`, Dagster) runs it first when a fresh
clone has not, so the next command works whichever came first.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .dbt_files import packages_folder
from .errors import UsageError


class DbtPackagesError(UsageError):
    """`dbt deps` could not install the project's packages: `project` names the dbt project, `detail` what dbt
    said."""

    def __init__(self, project: str, detail: str) -> None:
        self.project, self.detail = project, detail
        super().__init__(f"dbt project {project}: `dbt deps` failed: {detail}")


def local_packages(project_dir: Path) -> dict[str, Path]:
    """Each local package of the project by its name (its dbt_project.yml's `name`), with its folder."""
    listing = project_dir / "packages.yml"
    if not listing.is_file():
        return {}
    declared = yaml.safe_load(listing.read_text(encoding="utf-8")) or {}
    packages: dict[str, Path] = {}
    for entry in declared.get("packages") or []:
        if isinstance(entry, dict) and "local" in entry:
            folder = (project_dir / str(entry["local"])).resolve()
            if not (folder / "dbt_project.yml").is_file():
                raise DbtPackagesError(
                    str(project_dir),
                    f"packages.yml lists the local package {entry['local']}, which has no dbt_project.yml",
                )
            manifest = yaml.safe_load((folder / "dbt_project.yml").read_text(encoding="utf-8")) or {}
            packages[str(manifest["name"])] = folder
    return packages


def dbt_executable() -> str:
    """The `dbt` installed beside this Python, else the first on PATH (its path), else the bare name (starting it
    fails, naming it)."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.is_file() else shutil.which("dbt") or "dbt"


def missing_packages(project_dir: Path) -> list[str]:
    """The local packages not linked into the packages folder (dbt_packages/, or the project's
    `packages-install-path`), or linked to another folder (a moved or copied clone)."""
    installed = packages_folder(project_dir)
    return [
        name
        for name, folder in local_packages(project_dir).items()
        if not (installed / name).exists() or (installed / name).resolve() != folder
    ]


def ensure_installed(project_dir: Path, dbt: str | None = None) -> bool:
    """Run `dbt deps` in the project when a local package is missing; whether it ran. `dbt` is the executable,
    by default the one installed beside this Python, else the first on PATH. Processes starting side by side
    (parallel test workers, two schedulers) take turns on a lock, and the later ones find it done."""
    project_dir = project_dir.resolve()
    dbt = dbt or dbt_executable()
    if not missing_packages(project_dir):
        return False
    key = hashlib.sha256(str(project_dir).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"lago-mago-dbt-deps-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not missing_packages(project_dir):
            return False
        try:
            done = subprocess.run(
                [dbt, "deps", "--project-dir", str(project_dir)],
                cwd=project_dir,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise DbtPackagesError(str(project_dir), f"cannot start {dbt}: {exc.strerror}") from exc
        if done.returncode != 0 or missing_packages(project_dir):
            raise DbtPackagesError(str(project_dir), (done.stdout + done.stderr).strip()[-2000:])
    return True
