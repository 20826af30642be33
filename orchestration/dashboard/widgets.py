"""What every page of the dashboard shares: the lake, the one reader of its tables, the freshness banner, numbers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import streamlit as st

from ingestion.freshness import published_freshness
from orchestration.dashboard.gold import SCHEMA, NotPublishedError, PublishedGold

DEFAULT_LAKE = "lake"


def lake_uri() -> str:
    """The lake the dashboard reads: env LAKE_URI, as for the capture and dbt; `./lake` by default."""
    return os.environ.get("LAKE_URI") or DEFAULT_LAKE


@st.cache_resource
def _reader(lake: str) -> PublishedGold:
    return PublishedGold(lake)


def gold() -> PublishedGold:
    """The reader every session shares (it reads a table again only when its Delta version moved)."""
    return _reader(lake_uri())


def stop_unless_published(error: NotPublishedError) -> None:
    st.info(str(error))
    st.stop()


def freshness(tables: Sequence[str]) -> None:
    """The page's tables: last build, Delta version and last capture; a warning for each one that is stale."""
    wanted = {f"{SCHEMA}.{table}" for table in tables}
    rows = [row for row in published_freshness(lake_uri()) if row.table in wanted]
    for row in rows:
        if row.status == "stale":
            st.warning(f"{row.table} is {row.describe()}. The next build brings it up to date.", icon="⏳")
    parts = []
    for row in sorted(rows, key=lambda row: row.table):
        captured = f", last capture {_moment(row.last_capture)}" if row.last_capture else ""
        parts.append(f"`{row.table}` v{row.version}: built {_moment(row.built_at)}{captured}, {row.status}")
    if parts:
        st.caption(
            " · ".join(parts),
            help="Built: the last build that published the table (UTC). Last capture: "
            "the latest capture of the sources it is built from. Stale: the lake holds a capture the "
            "table does not reflect yet.",
        )


def number(value: object) -> str:
    """A count or sum as the pages print it: digits grouped by thousands, cents when it has them; a blank is a
    dash. Through Decimal, so a DECIMAL column's sum is printed exactly."""
    if value is None or str(value) in ("nan", "NaN", "<NA>", "NaT"):
        return "-"
    exact = Decimal(str(value))
    if exact == exact.to_integral_value():
        return f"{int(exact):,}"
    return f"{exact:,.2f}"


def table(frame: Any) -> None:
    """A table of rows, its dates printed as dates (DuckDB hands pandas a DATE as a timestamp)."""
    dates = {
        str(column): st.column_config.DateColumn(str(column), format="YYYY-MM-DD")
        for column, kind in frame.dtypes.items()
        if str(kind).startswith("datetime64")
    }
    st.dataframe(frame, hide_index=True, width="stretch", column_config=dates)


def _moment(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"
