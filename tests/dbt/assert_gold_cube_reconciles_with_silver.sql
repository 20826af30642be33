-- The day-total rows of gold_points_daily_cube equal the same measures computed straight from Silver, on the days
-- the last builds wrote, as every test reads what a build wrote: the days of Silver's newest transactions and
-- transaction lines, the days of the transactions and lines its last change of each deleted or moved (the
-- pre-images of the feeds' last commits: a day a transaction left, or lost to a delete), and the cube's days whose
-- newest input is that new. Every day with --vars '{full_tests: true}'.
{%- set every_day = var('full_tests', false) %}
with

transactions as (
    select * from {{ ref('silver_loyalty__transactions') }}
),

transaction_products as (
    select * from {{ ref('silver_loyalty__transaction_products') }}
),

cube as (
    select * from {{ ref('gold_points_daily_cube') }}
),
{%- if not every_day %}

checked_days as (
    select transaction_date
    from transactions
    where _loaded_at >= (select max(newest._loaded_at) from transactions as newest)

    union

    select transactions.transaction_date
    from transaction_products
    inner join transactions
        on transaction_products.transaction_id = transactions.transaction_id
    where transaction_products._loaded_at >= (select max(newest._loaded_at) from transaction_products as newest)

    union

    select last_transactions.transaction_date
    from {{ lago_mago.last_commit_changes(ref('silver_loyalty__transactions')) }} as last_transactions

    union

    select transactions.transaction_date
    from {{ lago_mago.last_commit_changes(ref('silver_loyalty__transaction_products')) }} as last_lines
    inner join transactions
        on last_lines.transaction_id = transactions.transaction_id

    union

    select transaction_date
    from cube
    where source_loaded_at >= (select max(newest.source_loaded_at) from cube as newest)
),
{%- endif %}

silver_facts as (
    select
        transactions.transaction_date,
        transactions.transaction_id,
        transactions.customer_id,
        coalesce(transaction_products.points_earned, transactions.points_earned) as points_earned,
        coalesce(transaction_products.points_spent, transactions.points_spent) as points_spent
    from transactions
    left join transaction_products
        on transactions.transaction_id = transaction_products.transaction_id
    {%- if not every_day %}
    where transactions.transaction_date in (select checked_days.transaction_date from checked_days)
    {%- endif %}
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
    from cube
    where
        grouping_level = 'day'
        {%- if not every_day %}
        and transaction_date in (select checked_days.transaction_date from checked_days)
        {%- endif %}
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
