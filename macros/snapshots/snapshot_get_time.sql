{#-
    dbt-duckdb stamps snapshots with a naive `now()::timestamp`; Bronze's _cdc_timestamp (the snapshots'
    updated_at) is a timestamp with time zone, so keep the zone (the session runs in UTC). Found through the
    `dispatch` search order in dbt_project.yml.
-#}
{% macro duckdb__snapshot_get_time() -%}
    {{ current_timestamp() }}
{%- endmacro %}
