"""The project's local dbt packages (the CDC engine) installed as `dbt deps` installs them, by what runs dbt for a
user without a shell in between (the scheduler's `--dbt-build`, Dagster): once, into a clone that lacks them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.dbt import copy_project

from ingestion.dbt_files import packages_folder, parse_inputs
from ingestion.dbt_packages import DbtPackagesError, ensure_installed, local_packages, missing_packages

ENGINE = "lago_cdc"


def test_a_fresh_copy_gets_its_packages_once(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project", install_packages=False)
    assert local_packages(project) == {ENGINE: (project / "packages" / ENGINE).resolve()}
    assert missing_packages(project) == [ENGINE]

    assert ensure_installed(project) is True
    link = project / "dbt_packages" / ENGINE
    assert link.resolve() == (project / "packages" / ENGINE).resolve()
    assert (link / "macros" / "bronze" / "bronze_cdc.sql").is_file()
    # installed: nothing to do the second time
    assert missing_packages(project) == []
    assert ensure_installed(project) is False


def test_a_link_to_another_clone_is_replaced(tmp_path: Path) -> None:
    """A clone copied or moved with its dbt_packages/ keeps a link to the first clone's engine: it would build with
    another version of the engine than its own."""
    first = copy_project(tmp_path / "first")
    second = tmp_path / "second"
    shutil.copytree(first, second, symlinks=True)
    assert (second / "dbt_packages" / ENGINE).resolve() == (first / "packages" / ENGINE).resolve()
    assert missing_packages(second) == [ENGINE]

    assert ensure_installed(second) is True
    assert (second / "dbt_packages" / ENGINE).resolve() == (second / "packages" / ENGINE).resolve()


def test_packages_go_where_the_project_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project whose `packages-install-path` is Jinja, as dbt renders it: `dbt deps` installs there, and the
    packages are found there afterwards (not looked for in dbt_packages/, which would run `dbt deps` again and call
    its success a failure)."""
    project = copy_project(tmp_path / "project", install_packages=False)
    config = project / "dbt_project.yml"
    setting = "packages-install-path: \"{{ env_var('LAGO_TEST_PACKAGES', 'vendor/dbt') }}\"\n"
    config.write_text(config.read_text(encoding="utf-8") + setting, encoding="utf-8")
    monkeypatch.delenv("LAGO_TEST_PACKAGES", raising=False)
    assert packages_folder(project) == project / "vendor" / "dbt"
    assert missing_packages(project) == [ENGINE]

    assert ensure_installed(project) is True
    assert (project / "vendor" / "dbt" / ENGINE).resolve() == (project / "packages" / ENGINE).resolve()
    assert not (project / "dbt_packages").exists()
    assert missing_packages(project) == []
    assert ensure_installed(project) is False
    assert any(path.is_relative_to(project / "vendor" / "dbt" / ENGINE) for path in parse_inputs(project, project))

    # the variable set: another folder, where nothing is installed yet
    monkeypatch.setenv("LAGO_TEST_PACKAGES", "elsewhere")
    assert packages_folder(project) == project / "elsewhere"
    assert missing_packages(project) == [ENGINE]


def test_a_value_dbt_alone_can_render_falls_back_to_dbts_default(tmp_path: Path) -> None:
    """A `packages-install-path` that needs more of dbt's Jinja than env_var (a project variable), or a
    dbt_project.yml that does not load: dbt's default folder, and dbt's own parse reports what is wrong."""
    (tmp_path / "dbt_project.yml").write_text("name: p\npackages-install-path: \"{{ var('where') }}\"\n")
    assert packages_folder(tmp_path) == tmp_path / "dbt_packages"
    (tmp_path / "dbt_project.yml").write_text("name: [unclosed\n")
    assert packages_folder(tmp_path) == tmp_path / "dbt_packages"
    # a folder the same: dbt's default is watched
    (tmp_path / "dbt_project.yml").write_text('name: p\nmodel-paths: ["{{ var(\'where\') }}", "more"]\n')
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.sql").write_text("select 1\n")
    assert tmp_path / "models" / "m.sql" in set(parse_inputs(tmp_path, tmp_path))


def test_a_failed_install_names_the_project_and_what_dbt_said(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project", install_packages=False)
    (project / "packages.yml").write_text("packages:\n  - local: packages/lago_cdc\n  - local: packages/nowhere\n")
    with pytest.raises(DbtPackagesError) as error:
        ensure_installed(project)
    assert error.value.project == str(project.resolve())
    assert "packages/nowhere" in error.value.detail
    assert error.value.exit_code == 2
    assert not (project / "dbt_packages").exists()


def test_a_missing_dbt_is_an_error_with_its_name(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project", install_packages=False)
    with pytest.raises(DbtPackagesError) as error:
        ensure_installed(project, dbt=str(tmp_path / "no-dbt-here"))
    assert error.value.project == str(project.resolve())
    assert "no-dbt-here" in error.value.detail
    assert not (project / "dbt_packages").exists()
