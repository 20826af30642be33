"""The files `dbt parse` reads in a project, and the folder its packages are installed in.

What keeps a parsed manifest between commands (the scheduler's kept dbt process, the Dagster definitions) parses
the project again only when one of these changed: the project's own files, every file and folder under the
folders its `dbt_project.yml` names (dbt's defaults where it names none), each installed package's the same way
(a local package is a link, followed), the packages folder itself and the profile. A folder's time moves when a
file is added to it or removed, so a model added or deleted counts as a change too.

`dbt_project.yml` values may be Jinja, as dbt renders them (`packages-install-path: "{{ env_var('X', 'vendor')
}}"`): they are rendered here with `env_var` the way dbt reads it; a value that needs more than that, or a file
that does not load, falls back to dbt's default, and dbt's own parse reports what is wrong with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

# what `dbt deps` installs from
PACKAGE_FILES = ("packages.yml", "dependencies.yml", "package-lock.yml")
# the project's files dbt reads when it parses, besides its folders
PROJECT_FILES = ("dbt_project.yml", *PACKAGE_FILES, "selectors.yml")
# dbt's default folders, where dbt_project.yml names none
DEFAULT_FOLDERS: dict[str, list[str]] = {
    "model-paths": ["models"],
    "macro-paths": ["macros"],
    "seed-paths": ["seeds"],
    "snapshot-paths": ["snapshots"],
    "test-paths": ["tests"],
    "analysis-paths": ["analyses"],
    "docs-paths": [],
}
DEFAULT_PACKAGES_FOLDER = "dbt_packages"


class _Unrenderable(Exception):
    """A value of dbt_project.yml needs more of dbt's Jinja context than `env_var`."""


def _env_var(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise _Unrenderable(name)
    return value


_JINJA = SandboxedEnvironment(undefined=jinja2.StrictUndefined)
_JINJA.globals["env_var"] = _env_var


def _rendered(value: str, default: str) -> str:
    if "{" not in value:
        return value
    try:
        return _JINJA.from_string(value).render()
    except (_Unrenderable, jinja2.TemplateError):
        return default


def project_config(project_dir: Path) -> dict[str, Any]:
    """The project's dbt_project.yml as YAML (unrendered); empty when it does not load."""
    try:
        loaded = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _folders(config: dict[str, Any], key: str) -> list[str]:
    """The folders a dbt_project.yml names under `key` (`model-paths`, ...), rendered; dbt's default else."""
    default = DEFAULT_FOLDERS[key]
    declared = config.get(key, default)
    declared = [declared] if isinstance(declared, str) else declared
    if not isinstance(declared, list) or not all(isinstance(item, str) for item in declared):
        return default
    rendered = [_rendered(item, "") for item in declared]
    return default if "" in rendered else rendered


def packages_folder(project_dir: Path) -> Path:
    """Where `dbt deps` installs the project's packages: its `packages-install-path`, rendered, or dbt_packages/."""
    declared = project_config(project_dir).get("packages-install-path")
    if not isinstance(declared, str) or not declared:
        return project_dir / DEFAULT_PACKAGES_FOLDER
    return project_dir / _rendered(declared, DEFAULT_PACKAGES_FOLDER)


def parse_inputs(project_dir: Path, profiles_dir: Path) -> Iterator[Path]:
    """Every file and folder `dbt parse` of the project reads (the module's docstring). A path that is not there is
    left out by the caller."""
    yield from _project_inputs(project_dir)
    yield profiles_dir / "profiles.yml"
    packages = packages_folder(project_dir)
    yield packages
    if packages.is_dir():
        for package in sorted(packages.iterdir()):
            if (package / "dbt_project.yml").is_file():
                yield from _project_inputs(package)


def _project_inputs(project_dir: Path) -> Iterator[Path]:
    """A project's own files and the files and folders under the folders its dbt_project.yml names."""
    for name in PROJECT_FILES:
        yield project_dir / name
    config = project_config(project_dir)
    seen: set[str] = set()  # a link back up a folder would make the walk endless
    for key in DEFAULT_FOLDERS:
        for folder in _folders(config, key):
            for root, folders, files in os.walk(project_dir / folder, followlinks=True):
                real = os.path.realpath(root)
                if real in seen:
                    folders.clear()
                    continue
                seen.add(real)
                yield Path(root)
                yield from (Path(root) / name for name in files)
