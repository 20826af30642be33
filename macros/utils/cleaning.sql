{#- Silver cleaning rules, one place each. -#}

{#- Trimmed text; empty text becomes NULL. -#}
{% macro clean_text(expression) -%}
    nullif(trim(cast({{ expression }} as {{ dbt.type_string() }})), '')
{%- endmacro %}


{#- A 0/1 flag as a boolean; NULL and any other value become NULL. -#}
{% macro flag_to_boolean(expression) -%}
    case cast({{ expression }} as {{ dbt.type_int() }}) when 1 then true when 0 then false end
{%- endmacro %}


{#-
    Incremental filter on Bronze's load column: only rows loaded since the last run of this model. Rows loaded
    by one bronze run share one _loaded_at, and silver runs after bronze, so a strict comparison loses nothing.
-#}
{% macro loaded_since_last_run(loaded_at_column='_loaded_at') -%}
    {{ loaded_at_column }} > (
        select coalesce(max({{ loaded_at_column }}), {{ lago_mago.cast_to_timestamp_tz("'1900-01-01'") }})
        from {{ this }}
    )
{%- endmacro %}


{#-
    Post-hook of incremental Silver models: delete the rows whose key no longer exists upstream. The watermark
    sees new and changed Bronze rows only; a row deleted in Bronze leaves no trace to see, so deletes propagate
    by this anti-join on the keys (cheap next to a rebuild, and exact).
-#}
{% macro delete_rows_missing_upstream(upstream, key, upstream_key) %}
    delete from {{ this }}
    where not exists (
        select 1 from {{ upstream }} as upstream
        where {{ upstream_key }} = {{ this }}.{{ key }}
    )
{% endmacro %}
