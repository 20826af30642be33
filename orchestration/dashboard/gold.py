"""The dashboard's reader: the Gold tables the build published into the lake (Delta, `ingestion/published_tables.py`),
read with delta-rs and queried with an in-process DuckDB.

It never opens the warehouse: DuckDB's file admits one writer and no reader beside it, so a dashboard on the
warehouse would fail every build it overlapped. A Delta table is read at one version, whole: a build that commits
meanwhile changes what the next query sees, never half of one. Each query first looks up the tables' current
versions (one small log read each) and reads a table again only when its version moved.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import duckdb

from ingestion.published_tables import PublishedTables

SCHEMA = "gold"
CUBE = "gold_points_daily_cube"
MONTHLY_REPORT = "gold_points_monthly_report"
RESTATEMENTS = "gold_points_monthly_restatements"
CHURN = "gold_customer_churn_summary"
GMV_HISTORY = "gold_gmv_daily_history"

# the cube's dimensions below the day, and the grouping level that holds each combination of them
Dimension = Literal["product_category", "source_system"]
DIMENSIONS: tuple[Dimension, ...] = ("product_category", "source_system")
_LEVELS = {
    frozenset(): "day",
    frozenset({"product_category"}): "day_category",
    frozenset({"source_system"}): "day_source_system",
    frozenset(DIMENSIONS): "day_category_source_system",
}


class NotPublishedError(LookupError):
    """A Gold table the dashboard reads has not been published into the lake (no build has written it yet)."""

    def __init__(self, table: str, location: str) -> None:
        self.table, self.location = table, location
        super().__init__(f"{SCHEMA}.{table} is not published at {location} yet: run `dbt build` on this lake")


@dataclass(frozen=True)
class Slice:
    """A drill-down of the cube: the days, the values fixed on some dimensions, and the one to break down by."""

    start: date
    end: date
    filters: tuple[tuple[Dimension, str], ...] = ()
    breakdown: Dimension | None = None

    @property
    def level(self) -> str:
        """The cube's grouping level that holds exactly this slice's dimensions: its rows add up to nothing twice."""
        dimensions = {dimension for dimension, _ in self.filters}
        if self.breakdown is not None:
            dimensions.add(self.breakdown)
        return _LEVELS[frozenset(dimensions)]


class PublishedGold:
    """The published Gold tables of the lake at `lake_uri`."""

    def __init__(self, lake_uri: str) -> None:
        self.tables = PublishedTables(lake_uri)
        self._connection = duckdb.connect()
        self._versions: dict[str, int] = {}
        # one query at a time: the dashboard's sessions share this reader, and its tables' registrations
        self._lock = threading.Lock()

    def close(self) -> None:
        self._connection.close()

    def query(self, sql: str, tables: Sequence[str], parameters: Sequence[object] = ()) -> Any:
        """Run `sql` over the named tables at their current versions; returns a pandas DataFrame."""
        with self._lock:
            for table in tables:
                self._register(table)
            return self._connection.execute(sql, list(parameters)).df()

    def versions(self, tables: Sequence[str]) -> dict[str, int]:
        """The Delta version each table is read at (after a query that read it)."""
        return {table: self._versions[table] for table in tables if table in self._versions}

    def _register(self, table: str) -> None:
        from deltalake import DeltaTable

        location = self.tables.location(SCHEMA, table)
        options = self.tables.storage_options()
        if not DeltaTable.is_deltatable(location, storage_options=options):
            raise NotPublishedError(table, location)
        delta = DeltaTable(location, storage_options=options)
        version = delta.version()
        if self._versions.get(table) != version:
            # a table that is read whole: Gold tables are small, and the reader then holds no file open
            self._connection.register(table, delta.to_pyarrow_table())
            self._versions[table] = version

    # -- the pages' questions ------------------------------------------------------------------------------------

    def cube_days(self) -> tuple[date, date] | None:
        """The first and last day the cube holds."""
        frame = self.query(f"select min(transaction_date) as first, max(transaction_date) as last from {CUBE}", [CUBE])
        first, last = frame.iloc[0]["first"], frame.iloc[0]["last"]
        return None if first is None or str(first) == "NaT" else (_day(first), _day(last))

    def members(self, dimension: Dimension) -> list[str]:
        """The values a dimension takes in the cube."""
        level = _LEVELS[frozenset({dimension})]
        frame = self.query(
            f"select distinct {dimension} as member from {CUBE} where grouping_level = ? order by 1", [CUBE], [level]
        )
        return [str(member) for member in frame["member"]]

    def points(self, slice_: Slice) -> Any:
        """One row per day (and member of the breakdown) of the slice: transactions, customers and points."""
        conditions = ["grouping_level = ?", "transaction_date between ? and ?"]
        parameters: list[object] = [slice_.level, slice_.start, slice_.end]
        for dimension, value in slice_.filters:
            conditions.append(f"{dimension} = ?")
            parameters.append(value)
        member = f"{slice_.breakdown} as member" if slice_.breakdown else "'all' as member"
        return self.query(
            f"""
            select
                transaction_date,
                {member},
                transactions,
                distinct_customers,
                points_earned,
                points_spent,
                points_net
            from {CUBE}
            where {" and ".join(conditions)}
            order by transaction_date, member
            """,
            [CUBE],
            parameters,
        )

    def monthly_report(self) -> Any:
        return self.query(f"select * from {MONTHLY_REPORT} order by month_start_date", [MONTHLY_REPORT])

    def restatements(self) -> Any:
        return self.query(f"select * from {RESTATEMENTS} order by month_start_date, published_at", [RESTATEMENTS])

    def churn(self) -> Any:
        return self.query(f"select * from {CHURN} order by churn_status", [CHURN])

    def gmv_months(self) -> list[date]:
        """The first day of every month with an order date in the GMV history, latest first."""
        frame = self.query(
            f"select distinct date_trunc('month', order_date)::date as month from {GMV_HISTORY} order by 1 desc",
            [GMV_HISTORY],
        )
        return [_day(month) for month in frame["month"]]

    def gmv_as_known_on(self, month: date, known_on: date) -> Any:
        """GMV per order date of `month` and subsidiary as known at the end of `known_on` (the history's rows valid
        that day), beside today's figure for the same date and subsidiary."""
        return self.query(
            f"""
            with
            month_rows as (
                select * from {GMV_HISTORY}
                where order_date >= ? and order_date < ? + interval 1 month
            ),
            known as (
                select order_date, subsidiary, gmv
                from month_rows
                where valid_from <= ? and (valid_to is null or valid_to > ?)
            ),
            today as (
                select order_date, subsidiary, gmv from month_rows where is_current
            )
            select
                coalesce(known.order_date, today.order_date) as order_date,
                coalesce(known.subsidiary, today.subsidiary) as subsidiary,
                known.gmv as gmv_known_then,
                today.gmv as gmv_today
            from known
            full outer join today
                on known.order_date = today.order_date and known.subsidiary = today.subsidiary
            order by order_date, subsidiary
            """,
            [GMV_HISTORY],
            [month, month, known_on, known_on],
        )


def _day(value: object) -> date:
    """A date from what DuckDB hands pandas for a date (a Timestamp, a date)."""
    if hasattr(value, "date") and callable(value.date):
        return value.date()  # type: ignore[no-any-return]
    assert isinstance(value, date)
    return value
