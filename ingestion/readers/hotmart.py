"""A seeded, deterministic simulation of Hotmart's purchase event stream.

The events that arrive on simulated day `d` are a pure function of (seed, scale, d), computed in DuckDB SQL and
written straight to Parquet. Day 0 is 2023-01-01; each run advances the clock by one day (the day is kept in the
ingestion state, as for the loyalty simulator) and publishes the events that arrived that day, each stamped with
its simulated arrival time in `_ingested_at`.

Every purchase lives through the same kinds of events the real stream has:

- a `purchase` event when the order is placed; 30% of orders are still waiting for payment (`release_date`
  NULL); 70% of those are released one to five days later by a new `purchase` event, the rest stay NULL
  (cancelled);
- one `product_item` and one `purchase_extra_info` event, a quarter of them arriving one to three days late;
- one purchase in twenty switches subsidiary 1-20 days later, and a third of those then receive an older
  state (one minute after the first, the old subsidiary) after the switch: a stale event that must not win;
- one purchase in twenty has its value corrected 1-60 days later (a correction of the past);
- one event in twenty-five is re-sent identically 0-3 days after its first arrival.
"""

from __future__ import annotations

from pathlib import Path

from ingestion.catalog import EVENT_INGESTED_AT, Table
from ingestion.duck import connect, quote_identifier, sql_literal
from ingestion.errors import NotSimulatedError, ScaleError
from ingestion.readers.base import EventContext

BASE_DATE = "2023-01-01"
# Events of a purchase arrive at most this many days after the order (value corrections are the latest).
MAX_LAG_DAYS = 66
TABLES = ("purchase", "product_item", "purchase_extra_info")


def purchases_per_day(scale: int) -> int:
    """The simulator's `--scale` is the loyalty customer count; Hotmart gets one purchase per 100 of it."""
    return max(3, scale // 100)


class HotmartSimulatorReader:
    """Events that arrive on the capture's simulated day, with their arrival time as `_ingested_at`."""

    name = "simulator"
    simulated_days = True
    # The stream's own re-sends must reach the lake: Bronze is where identical events are deduplicated.
    skip_published = False

    def __init__(self, scale: int = 10_000, seed: int = 42) -> None:
        if scale < 1:
            raise ScaleError(scale, "positive")
        self.per_day = purchases_per_day(scale)
        self.seed = seed

    def available_tables(self, tables: list[Table]) -> list[Table]:
        return [t for t in tables if t.source == "hotmart" and t.name in TABLES]

    def read(self, table: Table, context: EventContext) -> Path:
        if table.source != "hotmart" or table.name not in TABLES:
            raise NotSimulatedError("the Hotmart simulator", table.qualified_name)
        dest = context.workdir / f"{table.name}.parquet"
        columns = ", ".join(
            f"cast({quote_identifier(c.name)} as {c.data_type}) as {quote_identifier(c.name)}" for c in table.columns
        )
        con = connect(context.workdir, memory_limit=context.duckdb_memory_limit)
        try:
            con.execute(
                f"copy (select cast(arrival_at as timestamptz) as {EVENT_INGESTED_AT}, {columns} "
                f"from ({self._events(context.day)}) where kind = {sql_literal(table.name)} "
                f"order by arrival_at, purchase_id, transaction_datetime) "
                f"to {sql_literal(str(dest))} (format parquet, compression snappy)"
            )
        finally:
            con.close()
        return dest

    def _events(self, day: int) -> str:
        """Every event arriving on `day`, all tables together (`kind` names the table)."""
        seed, per_day = self.seed, self.per_day
        first_day = max(0, day - MAX_LAG_DAYS)

        def h(salt: str, modulo: int, key: str = "purchase_id") -> str:
            return f"(hash({seed}, {key}, '{salt}') % {modulo})"

        def seconds(expression: str) -> str:
            return f"to_seconds(cast({expression} as bigint))"

        return f"""
        with purchases as (
            select
                purchase_id,
                c,
                timestamp '{BASE_DATE}' + to_days(cast(c as integer)) + {seconds(h("t0", 82800))} as t0,
                100000 + {h("buyer", 50000)} as buyer_id,
                1 + {h("item", 400)} as prod_item_id,
                800000 + {h("producer", 300)} as producer_id,
                500000 + {h("product", 2000)} as product_id,
                1 + {h("quantity", 4)} as item_quantity,
                (1 + {h("quantity", 4)}) * (990 + {h("price", 49000)}) as item_cents,
                case when {h("subsidiary", 4)} = 0 then 'internacional' else 'nacional' end as subsidiary,
                {h("pending", 10)} < 3 as is_pending,
                {h("cancelled", 10)} < 3 as is_cancelled,
                1 + {h("release_lag", 5)} as release_lag,
                case when {h("item_late", 4)} = 0 then 1 + {h("item_delay", 3)} else 0 end as item_delay,
                case when {h("info_late", 4)} = 0 then 1 + {h("info_delay", 3)} else 0 end as info_delay,
                {h("switch", 20)} = 0 as has_switch,
                1 + {h("switch_lag", 20)} as switch_lag,
                {h("stale", 3)} = 0 as has_stale_resend,
                {h("fix", 20)} = 1 as has_fix,
                1 + {h("fix_lag", 60)} as fix_lag,
                80 + {h("fix_pct", 41)} as fix_percent
            from (
                select range as purchase_id, range // {per_day} as c
                from range({first_day} * {per_day}, ({day} + 1) * {per_day})
            )
        ),

        versions as (
            -- purchase: the order, then (for pending payments not cancelled) the release
            select 'purchase' as kind, purchase_id, 1 as version,
                t0 as transaction_datetime,
                t0 + {seconds(h("a1", 900))} as arrival_at,
                buyer_id, prod_item_id, producer_id,
                cast(t0 as date) as order_date,
                case when is_pending then null else cast(t0 as date) end as release_date,
                null as product_id, null as item_quantity, null as purchase_value, null as subsidiary
            from purchases
            union all
            select 'purchase', purchase_id, 2,
                t0 + to_days(cast(release_lag as integer)),
                t0 + to_days(cast(release_lag as integer)) + {seconds(h("a2", 900))},
                buyer_id, prod_item_id, producer_id, cast(t0 as date),
                cast(t0 + to_days(cast(release_lag as integer)) as date),
                null, null, null, null
            from purchases where is_pending and not is_cancelled
            -- product_item: the item, sometimes days late, then maybe a value correction
            union all
            select 'product_item', purchase_id, 1,
                t0 + {seconds(h("i1", 300))},
                t0 + {seconds(h("i1", 300))} + to_days(cast(item_delay as integer)) + {seconds(h("ai1", 3600))},
                null, null, null, null, null,
                product_id, item_quantity, cast(item_cents / 100.0 as decimal(18, 2)), null
            from purchases
            union all
            select 'product_item', purchase_id, 2,
                t0 + to_days(cast(fix_lag as integer)),
                t0 + to_days(cast(fix_lag as integer)) + {seconds(h("ai2", 3600))},
                null, null, null, null, null,
                product_id, item_quantity, cast(item_cents * fix_percent // 100 / 100.0 as decimal(18, 2)), null
            from purchases where has_fix
            -- purchase_extra_info: the subsidiary, sometimes days late, maybe a switch, maybe a stale re-send
            union all
            select 'purchase_extra_info', purchase_id, 1,
                t0 + {seconds(h("e1", 600))},
                t0 + {seconds(h("e1", 600))} + to_days(cast(info_delay as integer)) + {seconds(h("ae1", 3600))},
                null, null, null, null, null, null, null, null, subsidiary
            from purchases
            union all
            select 'purchase_extra_info', purchase_id, 2,
                t0 + to_days(cast(switch_lag as integer)),
                t0 + to_days(cast(switch_lag as integer)) + {seconds(h("ae2", 3600))},
                null, null, null, null, null, null, null, null,
                case when subsidiary = 'nacional' then 'internacional' else 'nacional' end
            from purchases where has_switch
            union all
            select 'purchase_extra_info', purchase_id, 3,
                t0 + {seconds(h("e1", 600))} + to_minutes(1),
                t0 + to_days(cast(switch_lag + 1 as integer)) + {seconds(h("ae3", 3600))},
                null, null, null, null, null, null, null, null, subsidiary
            from purchases where has_switch and has_stale_resend
        ),

        deliveries as (
            select *, 0 as copy from versions
            union all
            -- identical re-sends: the same event again, up to three days after its first arrival
            select * replace (
                arrival_at + to_days(cast({h("resend_lag", 4, "purchase_id, kind, version")} as integer))
                    + {seconds(h("resend_at", 3600, "purchase_id, kind, version"))} as arrival_at
            ), 1
            from versions
            where {h("resend", 25, "purchase_id, kind, version")} = 0
        )

        select *, cast(transaction_datetime as date) as transaction_date
        from deliveries
        where cast(arrival_at as date) = date '{BASE_DATE}' + {day}
        """
