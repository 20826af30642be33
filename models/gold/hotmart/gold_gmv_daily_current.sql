{#- Today's answer: the current row of the GMV history for each order date and subsidiary. -#}
{{ config(materialized='view') }}

with

history as (
    select
        order_date,
        subsidiary,
        gmv,
        valid_from
    from {{ ref('gold_gmv_daily_history') }}
    where is_current
),

final as (
    select
        order_date,
        subsidiary,
        gmv,
        valid_from as known_since
    from history
)

select * from final
