{#- Silver cleaning rules, one place each. -#}

{#- Trimmed text; empty text becomes NULL. -#}
{% macro clean_text(expression) -%}
    nullif(trim(cast({{ expression }} as {{ dbt.type_string() }})), '')
{%- endmacro %}


{#- A 0/1 flag as a boolean; NULL and any other value become NULL. -#}
{% macro flag_to_boolean(expression) -%}
    case cast({{ expression }} as {{ dbt.type_int() }}) when 1 then true when 0 then false end
{%- endmacro %}


{#- Signed points split in two non-negative measures, so that Gold sums columns instead of repeating the rule:
    what a positive amount earns and what a negative one spends. NULL stays NULL (a line without points then
    falls back to its transaction's in Gold). -#}
{% macro points_earned(expression) -%}
    case when {{ expression }} > 0 then {{ expression }} when {{ expression }} <= 0 then 0 end
{%- endmacro %}

{% macro points_spent(expression) -%}
    case when {{ expression }} < 0 then -{{ expression }} when {{ expression }} >= 0 then 0 end
{%- endmacro %}
