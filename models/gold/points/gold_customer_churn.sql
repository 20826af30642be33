{#-
    Churn per customer as of the last day with transactions: recency, frequency and points over the latest
    28-day window and the one before it. Churned = has transacted, but not in the latest window.

    A view: the reference date moves with every new day of transactions, and with it every customer's row, so a
    stored table would be rewritten whole by each build (one row per customer, most of them with no transaction
    at all). As a view a build writes nothing here; a reader pays for an aggregate of the transactions and one
    join with the customers.
-#}
{{ config(materialized='view') }}
{%- set window_days = var('churn_window_days') -%}

with

customers as (
    select * from {{ ref('silver_loyalty__customers') }}
),

transactions as (
    select * from {{ ref('silver_loyalty__transactions') }}
),

reference as (
    select max(transaction_date) as reference_date
    from transactions
),

daily as (
    -- one row per customer and day with transactions: active days are then counted, not de-duplicated
    select
        customer_id,
        transaction_date,
        count(*) as transactions,
        sum(points_earned) as points_earned,
        sum(points_spent) as points_spent
    from transactions
    group by customer_id, transaction_date
),

windowed as (
    select
        daily.customer_id,
        daily.transaction_date,
        daily.transactions,
        daily.points_earned,
        daily.points_spent,
        {{ dbt.datediff('daily.transaction_date', 'reference.reference_date', 'day') }}
            as days_ago
    from daily
    cross join reference
),

per_customer as (
    select
        customer_id,
        min(transaction_date) as first_transaction_date,
        max(transaction_date) as last_transaction_date,
        count(case when days_ago < {{ window_days }} then 1 end) as active_days_current_window,
        count(case when days_ago >= {{ window_days }} and days_ago < {{ 2 * window_days }} then 1 end)
            as active_days_previous_window,
        cast(sum(case when days_ago < {{ window_days }} then transactions else 0 end) as {{ dbt.type_bigint() }})
            as transactions_current_window,
        cast(sum(case when days_ago < {{ window_days }} then points_earned else 0 end) as {{ dbt.type_bigint() }})
            as points_earned_current_window,
        cast(sum(case when days_ago < {{ window_days }} then points_spent else 0 end) as {{ dbt.type_bigint() }})
            as points_spent_current_window
    from windowed
    group by customer_id
),

final as (
    select
        customers.customer_id,
        reference.reference_date,
        per_customer.first_transaction_date,
        per_customer.last_transaction_date,
        {{ dbt.datediff('per_customer.last_transaction_date', 'reference.reference_date', 'day') }}
            as recency_days,
        coalesce(per_customer.active_days_current_window, 0) as active_days_current_window,
        coalesce(per_customer.active_days_previous_window, 0) as active_days_previous_window,
        coalesce(per_customer.transactions_current_window, 0) as transactions_current_window,
        coalesce(per_customer.points_earned_current_window, 0) as points_earned_current_window,
        coalesce(per_customer.points_spent_current_window, 0) as points_spent_current_window,
        coalesce(
            per_customer.last_transaction_date is not null
            and {{ dbt.datediff('per_customer.last_transaction_date', 'reference.reference_date', 'day') }}
            >= {{ window_days }},
            false
        ) as is_churned
    from customers
    cross join reference
    left join per_customer
        on customers.customer_id = per_customer.customer_id
)

select * from final
