{#-
    dbt looks incremental strategies up among the root project's macros only, so a strategy filed in a package is
    named here (the way dbt's documentation names a package's strategy): models configured with
    `incremental_strategy: cdc_merge` run lago_cdc's (packages/lago_cdc/macros/materializations/incremental_strategy/).
-#}
{% macro get_incremental_cdc_merge_sql(arg_dict) %}
    {{ return(lago_cdc.get_incremental_cdc_merge_sql(arg_dict)) }}
{% endmacro %}
