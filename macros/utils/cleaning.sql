{#- Silver cleaning rules, one place each. -#}

{% macro clean_text(expression) -%}
    nullif(trim(cast({{ expression }} as {{ dbt.type_string() }})), '')
{%- endmacro %}


{% macro flag_to_boolean(expression) -%}
    case cast({{ expression }} as {{ dbt.type_int() }}) when 1 then true when 0 then false end
{%- endmacro %}


{#- Two non-negative measures, so that Gold sums columns instead of repeating the rule; NULL stays NULL so that
    a line without points falls back to its transaction's in Gold. -#}
{% macro points_earned(expression) -%}
    case when {{ expression }} > 0 then {{ expression }} when {{ expression }} <= 0 then 0 end
{%- endmacro %}

{% macro points_spent(expression) -%}
    case when {{ expression }} < 0 then -{{ expression }} when {{ expression }} >= 0 then 0 end
{%- endmacro %}


{#- Source timestamps the systems write as text, parsed in Silver. -#}
{% macro parse_source_timestamp(expression) %}
    {{ return(adapter.dispatch('parse_source_timestamp', 'lago_mago')(expression)) }}
{% endmacro %}

{% macro default__parse_source_timestamp(expression) -%}
    try_cast(nullif(trim({{ expression }}), '') as timestamp)
{%- endmacro %}
