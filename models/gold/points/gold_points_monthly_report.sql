{#-
    Activity, new customers and points per calendar month.

    Incremental on Silver's change feeds: a month's row depends only on the transactions dated in it and the
    customers created in it, so a run rewrites the old and the new month of every changed transaction and
    customer (macros/gold/points_report.sql); the pre-hook empties those months first, so a month left without
    transactions has no row. A first build or --full-refresh writes every month; dbt show reads every
    month.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='month_start_date',
        on_schema_change='fail',
        pre_hook="{{ lago_mago.delete_touched('month_start_date', lago_mago.points_report_touched_months) }}",
        post_hook="{{ lago_cdc.record_feed_positions() }}",
    )
}}

with

transactions as (
    select * from {{ ref('silver_loyalty__transactions') }}
),

customers as (
    select * from {{ ref('silver_loyalty__customers') }}
),

{%- if lago_mago.rewrites_slices() %}

touched_months as (
    {{ lago_mago.points_report_touched_months() }}
),
{%- endif %}

monthly_activity as (
    select
        cast({{ dbt.date_trunc('month', 'transaction_date') }} as date) as month_start_date,
        count(*) as transactions,
        count(distinct customer_id) as active_customers,
        count(distinct case when source_system = 'twitch' then customer_id end) as active_customers_twitch,
        cast(sum(points_earned) as {{ dbt.type_bigint() }}) as points_earned,
        cast(sum(points_spent) as {{ dbt.type_bigint() }}) as points_spent
    from transactions
    {%- if lago_mago.rewrites_slices() %}
    where
        cast({{ dbt.date_trunc('month', 'transaction_date') }} as date)
        in (select touched_months.month_start_date from touched_months)
    {%- endif %}
    group by 1
),

monthly_signups as (
    select
        cast({{ dbt.date_trunc('month', 'created_at') }} as date) as month_start_date,
        count(*) as new_customers
    from customers
    {%- if lago_mago.rewrites_slices() %}
    where
        cast({{ dbt.date_trunc('month', 'created_at') }} as date)
        in (select touched_months.month_start_date from touched_months)
    {%- endif %}
    group by 1
),

final as (
    select
        monthly_activity.month_start_date,
        monthly_activity.transactions,
        monthly_activity.active_customers,
        monthly_activity.active_customers_twitch,
        coalesce(monthly_signups.new_customers, 0) as new_customers,
        monthly_activity.points_earned,
        monthly_activity.points_spent,
        monthly_activity.points_earned - monthly_activity.points_spent as points_net,
        round(monthly_activity.transactions / monthly_activity.active_customers, 2) as transactions_per_active_customer
    from monthly_activity
    left join monthly_signups
        on monthly_activity.month_start_date = monthly_signups.month_start_date
)

select * from final
