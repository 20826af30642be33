"""The Dagster definitions parse the dbt project again only when what dbt parses changed (orchestration/manifest.py):
`dg` marks every process it starts as a development one, and each would otherwise run `dbt deps` and `dbt parse`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster_dbt import DbtProject
from support.dbt import copy_project

from ingestion.dbt_files import parse_inputs
from orchestration.manifest import PREPARED_FOR, ManifestError, manifest_outdated, packages_changed, prepare

pytestmark = [pytest.mark.dbt]


def moved_after(path: Path, manifest: Path) -> None:
    """`path` written a second after the manifest was."""
    later = manifest.stat().st_mtime + 1
    os.utime(path, (later, later))


def test_the_manifest_is_prepared_again_only_when_what_dbt_parses_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_dir = copy_project(tmp_path / "project")
    target = tmp_path / "target"
    profiles = project_dir / "profiles"
    project = DbtProject(project_dir=project_dir, target_path=target, profiles_dir=profiles, target="dev")
    assert manifest_outdated(project), "no manifest yet"
    assert not packages_changed(project_dir), "copy_project installed the packages"
    prepare(project)  # `dbt parse` alone: the packages are installed
    manifest = project.manifest_path
    assert manifest.stat().st_size > 100_000
    assert not manifest_outdated(project), "the preparation left an input newer than its manifest"

    inputs = {path.relative_to(project_dir).as_posix() for path in parse_inputs(project_dir, profiles)}
    # the project's folders, the package's (through its link) and the profile are watched; the package's own
    # integration project, which dbt does not parse, is not
    package_macro = "dbt_packages/lago_cdc/macros/materializations/nothing_new.sql"
    for watched in ("models/gold/points/gold_customer_churn.sql", "macros/utils/cleaning.sql", "seeds",
                    package_macro, "profiles/profiles.yml"):  # fmt: skip
        assert watched in inputs, watched
    assert not any("integration_tests" in path for path in inputs)

    # an edited model, a package's macro edited through its link: prepared again; put back, not
    for edited in (project_dir / "models/gold/points/gold_customer_churn.sql",
                   project_dir / "packages/lago_cdc/macros/materializations/nothing_new.sql"):  # fmt: skip
        before = edited.stat().st_mtime
        moved_after(edited, manifest)
        assert manifest_outdated(project), edited
        os.utime(edited, (before, before))
        assert not manifest_outdated(project), edited

    # a file added under a parsed folder, then removed: its folder's time moves both times
    folder = project_dir / "macros" / "utils"
    before = folder.stat().st_mtime
    (folder / "added.sql").write_text("{% macro added() %}{% endmacro %}\n", encoding="utf-8")
    moved_after(folder, manifest)
    assert manifest_outdated(project)
    (folder / "added.sql").unlink()
    assert manifest_outdated(project)
    os.utime(folder, (before, before))
    assert not manifest_outdated(project)

    # what dbt does not parse changes nothing: a README, a folder left by a run of the package's own tests
    (project_dir / "README.md").write_text("notes\n", encoding="utf-8")
    (project_dir / "packages/lago_cdc/integration_tests/target").mkdir(parents=True, exist_ok=True)
    assert not manifest_outdated(project)

    # a package file newer than the installed packages: `dbt deps` runs first, then the parse
    packages_file = project_dir / "packages.yml"
    moved_after(packages_file, manifest)
    assert packages_changed(project_dir) and manifest_outdated(project)
    prepare(project)
    assert not packages_changed(project_dir) and not manifest_outdated(project)

    # a model dbt refuses: the error names the command and dbt's words, and the manifest stays outdated
    broken = project_dir / "models" / "gold" / "points" / "broken_model.sql"
    broken.write_text("select * from {{ ref('no_such_model') }}\n", encoding="utf-8")
    with pytest.raises(ManifestError) as refused:
        prepare(project)
    assert refused.value.command == "parse" and "no_such_model" in refused.value.detail, refused.value.detail
    assert not (target / PREPARED_FOR).exists() and manifest_outdated(project)
    broken.unlink()
    prepare(project)
    assert not manifest_outdated(project)

    # another target than the one it was prepared for
    other = DbtProject(project_dir=project_dir, target_path=target, profiles_dir=profiles, target="ci")
    assert manifest_outdated(other)
    # a manifest removed
    manifest.unlink()
    assert manifest_outdated(project)
    # no dbt to start: an error naming the project and the command
    monkeypatch.setattr("orchestration.manifest.dbt_executable", lambda: str(tmp_path / "no-dbt"))
    with pytest.raises(ManifestError, match="`dbt parse` failed: cannot start"):
        prepare(project)
