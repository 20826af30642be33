{#-
    How far each consumer has read each producer's change feed: one row per (consumer, producer), written by the
    consumer's post-hook (macros/change_feed.sql).
-#}
{{ config(materialized='incremental', incremental_strategy='append', tags=['lake_state'], full_refresh=false) }}

with

final as (
    select
        cast(null as {{ dbt.type_string() }}) as consumer_name,
        cast(null as {{ dbt.type_string() }}) as producer_name,
        cast(null as {{ dbt.type_bigint() }}) as commit_version,
        {{ lago_mago.cast_to_timestamp_tz('null') }} as recorded_at
)

select * from final
where 1 = 0
