{#- Silver cleaning rules, one place each. -#}

{#- Trimmed text; empty text becomes NULL. -#}
{% macro clean_text(expression) -%}
    nullif(trim(cast({{ expression }} as {{ dbt.type_string() }})), '')
{%- endmacro %}


{#- A 0/1 flag as a boolean; NULL and any other value become NULL. -#}
{% macro flag_to_boolean(expression) -%}
    case cast({{ expression }} as {{ dbt.type_int() }}) when 1 then true when 0 then false end
{%- endmacro %}
