{#-
    What the Hotmart models read of their producers' change feeds (packages/lago_cdc/macros/change_feed.sql), incremental runs only.
    Bronze's events and Silver's versions are only ever recomputed per purchase and per order date, so a feed is
    read for those keys alone; the rows themselves come from the producer's current state.
-#}


{% macro hotmart_changed_purchases(producers) %}
    {%- set parts = [] -%}
    {%- for producer in producers -%}
        {%- do parts.append(
            "select changes.purchase_id from " ~ lago_cdc.changes_since_last_build(producer) ~ " as changes") -%}
    {%- endfor -%}
    {{ return(parts | join('\n    union\n    ')) }}
{% endmacro %}


{#- a version outside GMV, before or after the change, adds nothing to any total: it touches no date -#}
{% macro hotmart_changed_order_dates(purchase_versions) %}
    {{ return(
        "select distinct changes.order_date from "
        ~ lago_cdc.changes_since_last_build(purchase_versions) ~ " as changes where changes.is_in_gmv") }}
{% endmacro %}


{#- Pre-hook of the GMV history: empty every touched order date, so a date whose GMV vanished keeps no row. -#}
{% macro gmv_history_delete_touched_dates() %}
    {%- if not execute or not is_incremental() -%}
        {{ return('select 1 as nothing_to_delete') }}
    {%- endif -%}
    {{ return(adapter.dispatch('delete_where_in', 'lago_mago')(
        this, 'order_date', lago_mago.hotmart_changed_order_dates(ref('silver_hotmart__purchase_versions')))) }}
{% endmacro %}
