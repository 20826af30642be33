{#- dbt finds incremental strategies among the root project's macros only: this names the package's. -#}
{% macro get_incremental_cdc_merge_sql(arg_dict) %}
    {{ return(lago_cdc.get_incremental_cdc_merge_sql(arg_dict)) }}
{% endmacro %}
