{#-
    Several columns as one comparable value, for counting distinct tuples (`count(distinct ...)` takes one
    expression on both engines): a struct. One column is itself.
-#}
{% macro row_value(columns) -%}
    {%- if columns | length == 1 -%}
        {{ columns[0] }}
    {%- else -%}
        {{ return(adapter.dispatch('row_value', 'lago_mago')(columns)) }}
    {%- endif -%}
{%- endmacro %}

{#- Spark, Databricks: struct(a, b). -#}
{% macro default__row_value(columns) -%}
    struct({{ columns | join(', ') }})
{%- endmacro %}

{#- DuckDB: an unnamed struct, row(a, b). -#}
{% macro duckdb__row_value(columns) -%}
    row({{ columns | join(', ') }})
{%- endmacro %}
