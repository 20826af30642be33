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
{% macro hotmart_changed_order_dates() %}
    {{ return(
        "select distinct changes.order_date from "
        ~ lago_cdc.changes_since_last_build(ref('silver_hotmart__purchase_versions'))
        ~ " as changes where changes.is_in_gmv") }}
{% endmacro %}

