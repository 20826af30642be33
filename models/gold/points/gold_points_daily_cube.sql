{#-
    Points per day × product category × source system, with subtotals (GROUP BY day, CUBE(category, source
    system): the day is in every grouping set, so each day's rows can be rewritten alone).

    Incremental on Silver's change feeds: a run rewrites every day a change since the last build touches,
    the old and the new day of a moved, updated or deleted transaction, the day of each transaction whose lines
    changed, and every day with a line of a product whose category changed or that was deleted. A day left
    with no transaction loses its rows (the pre-hook empties every touched day first). A backfill rewrites
    exactly the days of a range: --vars '{backfill_start_date: 2025-01-01, backfill_end_date: 2025-01-31}'.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='transaction_date',
        on_schema_change='fail',
        pre_hook="{{ lago_mago.delete_touched('transaction_date', lago_mago.points_cube_touched_days) }}",
        post_hook="{{ lago_cdc.record_feed_positions() }}",
    )
}}

with

transactions as (
    select * from {{ ref('silver_loyalty__transactions') }}
),

transaction_products as (
    select * from {{ ref('silver_loyalty__transaction_products') }}
),

products as (
    select * from {{ ref('silver_loyalty__products') }}
),

batch_dates as (
    {#- a first build, --full-refresh and dbt show read every day; backfill vars add their days to
        what an incremental run rewrites (so a unit test, never incremental, does not depend on them) #}
    {%- if lago_mago.rewrites_slices() %}
    {{ lago_mago.points_cube_touched_days() }}
    {%- else %}
    select distinct transaction_date
    from transactions
    {%- endif %}
),

facts as (
    -- one row per transaction line (per transaction when it has no line), its points earned and spent
    select
        transactions.transaction_date,
        transactions.transaction_id,
        transactions.customer_id,
        transactions.source_system,
        coalesce(products.product_category, 'unknown') as product_category,
        -- a line's points, or the transaction's when it has no line (or the line no points)
        coalesce(transaction_products.points_earned, transactions.points_earned) as points_earned,
        coalesce(transaction_products.points_spent, transactions.points_spent) as points_spent,
        greatest(
            transactions._loaded_at,
            coalesce(transaction_products._loaded_at, transactions._loaded_at)
        ) as source_loaded_at
    from transactions
    left join transaction_products
        on transactions.transaction_id = transaction_products.transaction_id
    left join products
        on transaction_products.product_id = products.product_id
    where transactions.transaction_date in (select batch_dates.transaction_date from batch_dates)
),

cubed as (
    select
        transaction_date,
        product_category,
        source_system,
        grouping(product_category) * 2 + grouping(source_system) as grouping_id,
        count(distinct transaction_id) as transactions,
        count(distinct customer_id) as distinct_customers,
        cast(sum(points_earned) as {{ dbt.type_bigint() }}) as points_earned,
        cast(sum(points_spent) as {{ dbt.type_bigint() }}) as points_spent,
        max(source_loaded_at) as source_loaded_at
    from facts
    -- the day is in every grouping set: day × category × source system, day × category, day × source system, day
    group by transaction_date, cube(product_category, source_system)
),

final as (
    select
        transaction_date,
        case grouping_id
            when 0 then 'day_category_source_system'
            when 1 then 'day_category'
            when 2 then 'day_source_system'
            else 'day'
        end as grouping_level,
        grouping_id,
        product_category,
        source_system,
        transactions,
        distinct_customers,
        points_earned,
        points_spent,
        points_earned - points_spent as points_net,
        max(source_loaded_at) over (partition by transaction_date) as source_loaded_at
    from cubed
)

select * from final
