{#-
    Churn at a glance, for the dashboard: the customers of each churn status as of the reference date, with their
    activity in the latest window. Four rows at most, so a build rewrites it whole; it reads the churn view once.
-#}
with

churn as (
    select * from {{ ref('gold_customer_churn') }}
),

classified as (
    select
        reference_date,
        recency_days,
        transactions_current_window,
        points_earned_current_window,
        points_spent_current_window,
        case
            when is_churned then 'churned'
            when last_transaction_date is null then 'never_transacted'
            else 'active'
        end as churn_status
    from churn
),

final as (
    select
        churn_status,
        max(reference_date) as reference_date,
        count(*) as customers,
        cast(sum(transactions_current_window) as {{ dbt.type_bigint() }}) as transactions_current_window,
        cast(sum(points_earned_current_window) as {{ dbt.type_bigint() }}) as points_earned_current_window,
        cast(sum(points_spent_current_window) as {{ dbt.type_bigint() }}) as points_spent_current_window,
        avg(recency_days) as average_recency_days
    from classified
    group by churn_status
)

select * from final
