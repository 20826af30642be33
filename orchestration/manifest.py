"""When the Dagster definitions parse the dbt project again: only when the project changed since its manifest.

`dg` marks itself and every process it starts as a development one (DAGSTER_IS_DEV_CLI), and dagster-dbt then
prepares the project on every load of the definitions: `dbt --version`, `dbt deps`, `dbt --version` again and
`dbt parse`, about 15 s here, in `dg launch`'s own process and again in each step's process, in each `dg list defs`
and on each run under `dg dev`. The manifest only shapes the asset graph (the `dbt build` of a run parses for
itself, with dbt's partial parsing), so it is prepared again when a file dbt parses is newer than it, when a file
or folder was added or removed there (its folder's time moves), or when it was prepared for another target.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from dagster_dbt import DbtProject

# beside the manifest: the target it was prepared for
PREPARED_FOR = "lago_prepared_for.json"
# the project's files dbt reads when it parses, besides its folders
PROJECT_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml", "package-lock.yml", "selectors.yml")
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


def prepare(project: DbtProject) -> None:
    """dagster-dbt's preparation (`dbt deps`, `dbt parse`), then the record of the target it was made for."""
    project.preparer.prepare(project)
    (project.manifest_path.parent / PREPARED_FOR).write_text(json.dumps({"target": project.target}), encoding="utf-8")
