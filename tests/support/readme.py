"""README commands as a newcomer types them: a copy of the project after the quick start, and a shell in it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .dbt import ROOT, copy_project

README = ROOT / "README.md"


@dataclass(frozen=True)
class QuickStart:
    """A copy of the project after the README's quick start (`python -m ingestion`, `dbt deps`, `dbt build`),
    and a newcomer's shell in it, to run README commands as they are written."""

    project: Path
    env: dict[str, str]
    customers: int

    @property
    def warehouse(self) -> Path:
        return self.project / "warehouse" / "lago_mago.duckdb"

    def bash(self, script: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @staticmethod
    def readme_block(heading: str) -> list[str]:
        """The lines of the first ```bash block under `heading` in README.md."""
        section = README.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
        block = section.split("```bash\n", 1)[1].split("```", 1)[0]
        return [line for line in block.splitlines() if line.strip()]


def newcomer_env(tmp_path: Path) -> dict[str, str]:
    """The venv's python and dbt on PATH, and none of the developer's lake, warehouse, dbt or AWS set-up."""
    scrubbed = ("LAKE_URI", "DUCKDB_PATH", "SPARK_WAREHOUSE_DIR", "DUCKDB_TEMP_DIRECTORY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DBT_", "LAGO_")) and k not in scrubbed}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    return env


def quick_start_at(root: Path, customers: int) -> QuickStart:
    """The quick start in a copy of the project under `root`, with `customers` on the simulator's first day."""
    project = copy_project(root / "project", install_packages=False)
    (project / "warehouse").mkdir()
    started = QuickStart(project, newcomer_env(root), customers)
    built = started.bash(f"set -e\npython -m ingestion run --scale {customers}\ndbt deps\ndbt build --target dev")
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-2000:]
    assert started.warehouse.is_file()
    return started
