{#-
    The checkpoint: one row per lake file planned for or merged into a model fed by the lake. The models'
    build and post-hooks write it (macros/bronze/checkpoint.sql); this model only creates it, empty.
-#}
{{ config(materialized='incremental', incremental_strategy='append', tags=['lake_state'], full_refresh=false) }}

with

final as (
    select
        cast(null as {{ dbt.type_string() }}) as model_name,
        cast(null as {{ dbt.type_string() }}) as source_name,
        cast(null as {{ dbt.type_string() }}) as table_name,
        cast(null as {{ dbt.type_string() }}) as file_name,
        cast(null as {{ dbt.type_bigint() }}) as row_count,
        {{ lago_mago.cast_to_timestamp_tz('null') }} as min_cdc_timestamp,
        {{ lago_mago.cast_to_timestamp_tz('null') }} as max_cdc_timestamp,
        cast(null as {{ dbt.type_bigint() }}) as min_cdc_sequence,
        cast(null as {{ dbt.type_bigint() }}) as max_cdc_sequence,
        cast(null as {{ dbt.type_string() }}) as status,
        {{ lago_mago.cast_to_timestamp_tz('null') }} as merged_at
)

select * from final
where 1 = 0
