-- The day-total rows of gold_points_daily_cube equal the same measures computed straight from Silver.
with

silver_facts as (
    select
        transactions.transaction_date,
        transactions.transaction_id,
        transactions.customer_id,
        coalesce(transaction_products.points_earned, transactions.points_earned) as points_earned,
        coalesce(transaction_products.points_spent, transactions.points_spent) as points_spent
    from {{ ref('silver_loyalty__transactions') }} as transactions
    left join {{ ref('silver_loyalty__transaction_products') }} as transaction_products
        on transactions.transaction_id = transaction_products.transaction_id
),

silver_days as (
    select
        transaction_date,
        count(distinct transaction_id) as transactions,
        count(distinct customer_id) as distinct_customers,
        sum(points_earned) as points_earned,
        sum(points_spent) as points_spent
    from silver_facts
    group by transaction_date
),

gold_days as (
    select
        transaction_date,
        transactions,
        distinct_customers,
        points_earned,
        points_spent
    from {{ ref('gold_points_daily_cube') }}
    where grouping_level = 'day'
)

select
    coalesce(silver_days.transaction_date, gold_days.transaction_date) as transaction_date,
    silver_days.transactions as silver_transactions,
    gold_days.transactions as gold_transactions,
    silver_days.points_earned as silver_points_earned,
    gold_days.points_earned as gold_points_earned,
    silver_days.points_spent as silver_points_spent,
    gold_days.points_spent as gold_points_spent
from silver_days
full outer join gold_days
    on silver_days.transaction_date = gold_days.transaction_date
where
    silver_days.transaction_date is null
    or gold_days.transaction_date is null
    or silver_days.transactions <> gold_days.transactions
    or silver_days.distinct_customers <> gold_days.distinct_customers
    or silver_days.points_earned <> gold_days.points_earned
    or silver_days.points_spent <> gold_days.points_spent
