{#-
    What the engine needs of dbt-spark and dbt-databricks beyond their own macros. dbt-databricks looks for
    databricks__ first, then spark__. The `get_columns_in_relation` variants are found through a project's
    `dispatch` search order for the `dbt` namespace, which lists lago_cdc before dbt.
-#}


{#-
    Incremental strategies on Spark. dbt-spark accepts only its built-in ones (append, merge, insert_overwrite,
    microbatch). These two let the engine's strategies through on Delta tables; dbt calls dbt-spark's
    `dbt_spark_validate_get_incremental_strategy` and `dbt_spark_get_incremental_sql` by name from the root
    project, so a project on Spark names these there in one line each (the project's macros/cdc_engine.sql):
    `cdc_merge` (the CDC engine's, packages/lago_cdc; a single MERGE here) and `delete+insert`, which on Delta is one
    MERGE on the unique key (a Spark statement cannot hold a DELETE and an INSERT). dbt-databricks knows custom
    strategies and delete+insert itself and does not call these.
-#}
{% macro spark_validate_incremental_strategy(raw_strategy, file_format) %}
    {%- if raw_strategy in ['append', 'merge', 'insert_overwrite', 'microbatch'] -%}
        {{ return(dbt.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) }}
    {%- endif -%}
    {%- if file_format != 'delta' -%}
        {{ exceptions.raise_compiler_error(
            "incremental strategy " ~ raw_strategy ~ " needs file_format 'delta' (found " ~ file_format ~ ")") }}
    {%- endif -%}
    {%- if raw_strategy != 'delete+insert' and context.get('get_incremental_' ~ raw_strategy ~ '_sql') is none -%}
        {{ exceptions.raise_compiler_error(
            "incremental strategy " ~ raw_strategy ~ ": no macro get_incremental_" ~ raw_strategy ~ "_sql") }}
    {%- endif -%}
    {{ return(raw_strategy) }}
{% endmacro %}

{% macro spark_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy in ['append', 'merge', 'insert_overwrite', 'microbatch'] -%}
        {{ return(dbt.dbt_spark_get_incremental_sql(
            strategy, source, target, existing, unique_key, incremental_predicates)) }}
    {%- elif strategy == 'delete+insert' -%}
        {{ return(get_merge_sql(target, source, unique_key, dest_columns=none, incremental_predicates=incremental_predicates)) }}
    {%- endif -%}
    {{ return(context['get_incremental_' ~ strategy ~ '_sql']({
        'target_relation': target,
        'temp_relation': source,
        'unique_key': unique_key,
        'dest_columns': adapter.get_columns_in_relation(target),
        'incremental_predicates': incremental_predicates,
    })) }}
{% endmacro %}


{#-
    dbt's helpers (e.g. on_schema_change) read column names from the `get_columns_in_relation` macro;
    dbt-spark's returns the raw `describe` rows. Return dbt-spark's columns instead. dbt-databricks reads those raw rows on purpose: keep them there.
-#}
{% macro spark__get_columns_in_relation(relation) %}
    {{ return(adapter.get_columns_in_relation(relation)) }}
{% endmacro %}

{% macro databricks__get_columns_in_relation(relation) %}
    {{ return(dbt.spark__get_columns_in_relation(relation)) }}
{% endmacro %}
