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
    Incremental filter on a load column: only rows loaded since the last run of this model, whose newest load
    time is kept in `watermark_column` (default: the same name). Rows loaded by one upstream run share one load
    time, and this model runs after its upstream, so a strict comparison loses nothing. An empty model takes all.
-#}
{% macro loaded_since_last_run(loaded_at_column='_loaded_at', watermark_column=none) -%}
    {%- set never = lago_mago.cast_to_timestamp_tz("'1900-01-01'") %}
    {{ loaded_at_column }} > (
        select coalesce(max(previous_run.{{ watermark_column or loaded_at_column }}), {{ never }})
        from {{ this }} as previous_run
    )
{%- endmacro %}


{#-
    Post-hook of incremental Silver models: delete the rows whose key no longer exists upstream. The watermark
    sees new and changed Bronze rows only; a row deleted in Bronze leaves no trace to see, so deletes propagate
    by this anti-join on the keys (cheap next to a rebuild, and exact; keys are tested not null).
-#}
{% macro delete_rows_missing_upstream(upstream, key, upstream_key) %}
    {{ return(adapter.dispatch('delete_rows_missing_upstream', 'lago_mago')(upstream, key, upstream_key)) }}
{% endmacro %}

{% macro default__delete_rows_missing_upstream(upstream, key, upstream_key) %}
    delete from {{ this }}
    where {{ key }} not in (
        select {{ upstream_key }} from {{ upstream }} as upstream
        where {{ upstream_key }} is not null
    )
{% endmacro %}
