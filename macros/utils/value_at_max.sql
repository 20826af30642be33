{#-
    An aggregate (usable over a window) of `value` on the row with the largest `ordering`: rows whose ordering is
    NULL take no part, and the winning row's value is returned even when it is NULL, which is what a state carried
    forward needs (a NULL attribute of the latest event is the attribute). DuckDB's `arg_max` skips NULL values, so
    it is `arg_max_null` there; Spark's and Databricks' `max_by` already behave so.
-#}
{% macro value_at_max(value, ordering) %}
    {{ return(adapter.dispatch('value_at_max', 'lago_mago')(value, ordering)) }}
{% endmacro %}

{% macro default__value_at_max(value, ordering) -%}
    arg_max_null({{ value }}, {{ ordering }})
{%- endmacro %}

{% macro spark__value_at_max(value, ordering) -%}
    max_by({{ value }}, {{ ordering }})
{%- endmacro %}
