"""What `dg dev` loads (see [tool.dg] in pyproject.toml): the definitions for this environment."""

from orchestration.lakehouse import build_definitions
from orchestration.settings import Settings

defs = build_definitions(Settings.from_env())
