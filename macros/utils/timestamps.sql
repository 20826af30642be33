{#- How the source systems write their timestamps as text, read in Silver. -#}

{% macro parse_source_timestamp(expression) %}
    {{ return(adapter.dispatch('parse_source_timestamp', 'lago_mago')(expression)) }}
{% endmacro %}

{% macro default__parse_source_timestamp(expression) -%}
    try_cast(nullif(trim({{ expression }}), '') as timestamp)
{%- endmacro %}
