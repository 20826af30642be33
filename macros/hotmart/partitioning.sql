{#-
    Partitioning of a table by a date column, where the engine has it: nothing on DuckDB; the Spark and
    Databricks targets (issue 5) return their `partition_by` / `liquid_clustered_by` configs here.
    Usage: {{ config(materialized='table', **lago_mago.date_partition_config('order_date')) }}
-#}
{% macro date_partition_config(column_name) %}
    {{ return(adapter.dispatch('date_partition_config', 'lago_mago')(column_name)) }}
{% endmacro %}

{% macro default__date_partition_config(column_name) %}
    {{ return({}) }}
{% endmacro %}

{% macro spark__date_partition_config(column_name) %}
    {{ return({'partition_by': [column_name]}) }}
{% endmacro %}

{% macro databricks__date_partition_config(column_name) %}
    {{ return({'liquid_clustered_by': [column_name]}) }}
{% endmacro %}
