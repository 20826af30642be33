{#-
    What the Hotmart models read of their producers' change feeds (packages/lago_cdc/macros/change_feed.sql), incremental runs only.
    Bronze's events and Silver's versions are only ever recomputed per purchase and per order date, so a feed is
    read for those keys alone; the rows themselves come from the producer's current state.
-#}


{#- no feed moved: no purchase to recompute, and the model keeps its last build -#}
{% macro hotmart_changed_purchases(producers) %}
    {%- set parts = [] -%}
    {%- set feeds = [] -%}
    {%- for producer in producers -%}
        {%- set feed = lago_cdc.feed_since_last_build(producer) -%}
        {%- do feeds.append(feed) -%}
        {%- do parts.append("select changes.purchase_id from " ~ feed.changes ~ " as changes") -%}
    {%- endfor -%}
    {{ return(lago_cdc.nothing_new_marks(feeds) ~ '\n    ' ~ parts | join('\n    union\n    ')) }}
{% endmacro %}


{#- a version outside GMV, before or after the change, adds nothing to any total: it touches no date -#}
{% macro hotmart_changed_order_dates() %}
    {%- set feed = lago_cdc.feed_since_last_build(ref('silver_hotmart__purchase_versions')) -%}
    {{ return(
        lago_cdc.nothing_new_marks([feed]) ~ " select distinct changes.order_date from " ~ feed.changes
        ~ " as changes where changes.is_in_gmv") }}
{% endmacro %}

