"""Fixtures of this suite; the shared ones (the S3 server, `s3_lake_env`, `any_lake`) live in the root
`tests/conftest.py`."""

from __future__ import annotations

import pytest
from support.readme import QuickStart, quick_start_at


@pytest.fixture(scope="session")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> QuickStart:
    """One quick start per session, at a small simulator scale: the README commands run on it care about the
    warehouse and its lake, not their size."""
    return quick_start_at(tmp_path_factory.mktemp("quick-start"), customers=300)
