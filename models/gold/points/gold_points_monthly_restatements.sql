{#-
    Each change of a published monthly figure: a month's version against the one it replaced, with the size of
    the change. Reads the snapshot, so a build lists what earlier builds published, not what the lake holds now.
-#}
with

versions as (
    select * from {{ ref('gold_points_monthly_report_snapshot') }}
),

sequenced as (
    select
        month_start_date,
        dbt_valid_from as published_at,
        transactions,
        points_earned,
        points_spent,
        points_net,
        lag(dbt_valid_from) over (partition by month_start_date order by dbt_valid_from) as previous_published_at,
        lag(transactions) over (partition by month_start_date order by dbt_valid_from) as previous_transactions,
        lag(points_earned) over (partition by month_start_date order by dbt_valid_from) as previous_points_earned,
        lag(points_spent) over (partition by month_start_date order by dbt_valid_from) as previous_points_spent,
        lag(points_net) over (partition by month_start_date order by dbt_valid_from) as previous_points_net
    from versions
),

final as (
    select
        month_start_date,
        published_at,
        previous_published_at,
        previous_transactions,
        transactions,
        transactions - previous_transactions as transactions_change,
        previous_points_earned,
        points_earned,
        points_earned - previous_points_earned as points_earned_change,
        previous_points_spent,
        points_spent,
        points_spent - previous_points_spent as points_spent_change,
        previous_points_net,
        points_net,
        points_net - previous_points_net as points_net_change
    from sequenced
    -- a month's first version is its publication, not a restatement
    where previous_published_at is not null
)

select * from final
