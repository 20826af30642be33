-- In gold_points_daily_cube, the additive measures of the detail rows sum to every subtotal level of their day.
with

cube as (
    select * from {{ ref('gold_points_daily_cube') }}
),

per_level as (
    select
        transaction_date,
        grouping_level,
        sum(points_earned) as points_earned,
        sum(points_spent) as points_spent
    from cube
    group by transaction_date, grouping_level
),

detail as (
    select * from per_level
    where grouping_level = 'day_category_source_system'
)

select
    per_level.transaction_date,
    per_level.grouping_level
from per_level
inner join detail
    on per_level.transaction_date = detail.transaction_date
where
    per_level.points_earned <> detail.points_earned
    or per_level.points_spent <> detail.points_spent
