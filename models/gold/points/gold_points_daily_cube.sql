{#-
    Points per day × product category × source system, with subtotals (GROUP BY day, CUBE(category, source
    system): the day is in every grouping set, so each day's rows can be rewritten alone).
    Incremental by date: a run rewrites the days touched by Silver rows loaded since the last run; a backfill
    rewrites exactly the days of a range: --vars '{backfill_start_date: 2025-01-01, backfill_end_date: 2025-01-31}'.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='transaction_date',
        on_schema_change='fail',
    )
}}

{%- set backfill_start = var('backfill_start_date') -%}
{%- set backfill_end = var('backfill_end_date') -%}

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
    {%- if backfill_start and backfill_end %}
    select distinct transaction_date
    from transactions
    where transaction_date between cast('{{ backfill_start }}' as date) and cast('{{ backfill_end }}' as date)
    {%- elif is_incremental() %}
    select transactions.transaction_date
    from transactions
    where {{ lago_mago.loaded_since_last_run('transactions._loaded_at', 'source_loaded_at') }}
    union
    select transactions.transaction_date
    from transaction_products
    inner join transactions
        on transaction_products.transaction_id = transactions.transaction_id
    where {{ lago_mago.loaded_since_last_run('transaction_products._loaded_at', 'source_loaded_at') }}
    {%- else %}
    select distinct transaction_date
    from transactions
    {%- endif %}
),

facts as (
    -- one row per transaction line (per transaction when it has no line), points signed
    select
        transactions.transaction_date,
        transactions.transaction_id,
        transactions.customer_id,
        transactions.source_system,
        coalesce(products.product_category, 'unknown') as product_category,
        coalesce(transaction_products.points, transactions.points) as points,
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
        cast(sum(case when points > 0 then points else 0 end) as {{ dbt.type_bigint() }}) as points_earned,
        cast(sum(case when points < 0 then -points else 0 end) as {{ dbt.type_bigint() }}) as points_spent,
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
