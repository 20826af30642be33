{#-
    Daily GMV per order date and subsidiary, as known on each day: SCD2-shaped, one row per change of a
    (order_date, subsidiary) total. GMV of any order date as known on day D:
        valid_from <= D and (valid_to is null or valid_to > D)
    Every row derives from the arrival days of the events, so a rebuild reproduces it exactly and an event only
    changes the answers from the day it arrived.

    Incremental on Silver's change feed: an order date's rows depend only on the versions in GMV of that date, so
    a build rewrites exactly the order dates that changed versions had or have (the pre-hook empties them, the
    model recomputes them from Silver). A first build or --full-refresh computes every date.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ lago_mago.delete_touched('order_date', lago_mago.hotmart_changed_order_dates) }}",
        post_hook="{{ lago_cdc.record_feed_positions() }}",
        **lago_mago.date_partition_config('order_date')
    )
}}

with

counted_versions as (
    select
        order_date,
        subsidiary,
        gmv_value,
        valid_from,
        valid_to
    from {{ ref('silver_hotmart__purchase_versions') }}
    {%- if lago_mago.rewrites_slices() %}
    where
        is_in_gmv
        and order_date in (
            {{ lago_mago.hotmart_changed_order_dates() }}
        )
    {%- else %}
    where is_in_gmv
    {%- endif %}
),

deltas as (
    -- a purchase version adds its value to its (order_date, subsidiary) from valid_from and removes it at valid_to
    select
        order_date,
        subsidiary,
        valid_from as change_date,
        gmv_value as gmv_delta
    from counted_versions
    union all
    select
        order_date,
        subsidiary,
        valid_to as change_date,
        -gmv_value as gmv_delta
    from counted_versions
    where valid_to is not null
),

daily_deltas as (
    select
        order_date,
        subsidiary,
        change_date,
        sum(gmv_delta) as gmv_delta
    from deltas
    group by order_date, subsidiary, change_date
),

running as (
    select
        order_date,
        subsidiary,
        change_date,
        sum(gmv_delta) over (
            partition by order_date, subsidiary
            order by change_date
            rows between unbounded preceding and current row
        ) as gmv
    from daily_deltas
),

changed as (
    -- days whose changes cancel out (one purchase up, another down) are no new version
    select
        order_date,
        subsidiary,
        change_date,
        gmv
    from (
        select
            *,
            lag(gmv) over (partition by order_date, subsidiary order by change_date) as previous_gmv
        from running
    ) as compared
    where gmv <> coalesce(previous_gmv, 0)
),

versions as (
    select
        order_date,
        subsidiary,
        gmv,
        change_date as valid_from,
        lead(change_date) over (partition by order_date, subsidiary order by change_date) as valid_to
    from changed
),

final as (
    -- a total that fell to zero is no row: the previous row's valid_to closes it
    select
        order_date,
        subsidiary,
        cast(gmv as decimal(18, 2)) as gmv,
        valid_from,
        valid_to,
        valid_to is null as is_current,
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }} as _loaded_at
    from versions
    where gmv <> 0
)

select * from final
