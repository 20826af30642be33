{#-
    DuckDB's change-feed versions: one row per commit of a change-applying model (macros/change_feed.sql). Spark
    and Databricks count versions in Delta's own history and leave this table empty.
-#}
{{ config(materialized='incremental', incremental_strategy='append', tags=['lake_state'], full_refresh=false) }}

with

final as (
    select
        cast(null as {{ dbt.type_string() }}) as model_name,
        cast(null as {{ dbt.type_bigint() }}) as commit_version,
        cast(null as {{ dbt.type_string() }}) as commit_operation,
        {{ lago_mago.cast_to_timestamp_tz('null') }} as committed_at
)

select * from final
where 1 = 0
