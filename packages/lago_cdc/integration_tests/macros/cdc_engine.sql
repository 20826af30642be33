{#- dbt finds incremental strategies among the root project's macros only: this names the package's. -#}
{% macro get_incremental_cdc_merge_sql(arg_dict) %}
    {{ return(lago_cdc.get_incremental_cdc_merge_sql(arg_dict)) }}
{% endmacro %}


{#-
    dbt-spark checks and runs incremental strategies through these two macros, looked up by name among the root
    project's, and knows only its built-in strategies: these hand both to the CDC engine, which lets `cdc_merge`
    and `delete+insert` through on Delta tables (packages/lago_cdc/macros/adapters/spark.sql). dbt-databricks
    knows custom strategies itself and does not call them.
-#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {{ return(lago_cdc.spark_validate_incremental_strategy(raw_strategy, file_format)) }}
{% endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {{ return(lago_cdc.spark_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates)) }}
{% endmacro %}


{#-
    dbt takes a package's version of a built-in materialization only when the root project names it: a
    change-applying model with nothing new keeps its last build (lago_cdc: materializations/nothing_new.sql).
-#}
{% materialization incremental, adapter='duckdb', supported_languages=['sql', 'python'] %}
    {{ return(lago_cdc.incremental_unless_nothing_new(dbt.materialization_incremental_duckdb)) }}
{% endmaterialization %}

{% materialization incremental, adapter='spark', supported_languages=['sql', 'python'] %}
    {{ return(lago_cdc.incremental_unless_nothing_new(dbt.materialization_incremental_spark)) }}
{% endmaterialization %}
