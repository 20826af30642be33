"""The test tiers, for every suite: `pytest -m "not slow and not spark and not docs"` is the quick tier."""

from __future__ import annotations

import pytest

MARKERS = {
    "slow": "minutes rather than seconds (dbt builds, large files, many runs); left out of the quick tier",
    "spark": "needs a local Spark session with Delta Lake (Java 17 and the jars of scripts/spark_jars.sh)",
    "docs": "builds or browses the dbt docs site (headless Chromium)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
