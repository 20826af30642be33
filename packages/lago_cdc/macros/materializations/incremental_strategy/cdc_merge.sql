{#-
    Incremental strategy `cdc_merge` of the change-applying models (Bronze, Silver). The model's SQL has already
    kept one change per key, the one that wins over the target's row; applying it is MERGE's semantics: a change
    with _cdc_operation 'D' deletes the key, any other updates or inserts it. The merge also publishes the
    model's change feed (macros/change_feed.sql).
-#}
{% macro get_incremental_cdc_merge_sql(arg_dict) %}
    {%- set key = config.get('unique_key') -%}
    {%- if key is none -%}
        {%- set source_name, table_name = model.sources[0] -%}
        {%- set key = lago_cdc.declared_primary_key(lago_cdc.source_declaration(source_name, table_name)) -%}
    {%- endif -%}
    {%- set key = [key] if key is string else key -%}
    {{ return(adapter.dispatch('cdc_merge_sql', 'lago_cdc')(
        arg_dict.target_relation, arg_dict.temp_relation, key, arg_dict.dest_columns)) }}
{% endmacro %}


{#-
    DuckDB: the feed rows, then delete the rows of every changed key and insert the I/U rows, one transaction.
    Delete + insert is several times faster than MERGE on DuckDB (see stack-notes) and means the same here.
-#}
{% macro duckdb__cdc_merge_sql(target, changes, key, columns) %}
    {%- set quoted = [] -%}
    {%- for column in columns -%}
        {%- do quoted.append(adapter.quote(column.name)) -%}
    {%- endfor -%}
    {{ lago_cdc.write_feed_sql(target, changes, key, columns) }}

    delete from {{ target }}
    where exists (
        select 1 from {{ changes }} as changes
        where {{ lago_cdc.key_join(key, 'changes', target) }}
    );

    insert into {{ target }} ({{ quoted | join(', ') }})
    select {{ quoted | join(', ') }}
    from {{ changes }}
    where _cdc_operation <> 'D'
{% endmacro %}


{#- Spark, Databricks: one MERGE; Delta's Change Data Feed records what it changed. -#}
{% macro default__cdc_merge_sql(target, changes, key, columns) %}
    {%- set quoted = [] -%}
    {%- for column in columns -%}
        {%- do quoted.append(adapter.quote(column.name)) -%}
    {%- endfor -%}
    merge into {{ target }} as target
    using {{ changes }} as changes
        on {{ lago_cdc.key_join(key, 'target', 'changes') }}
    when matched and changes._cdc_operation = 'D' then delete
    when matched then update set
        {%- for column in quoted %}
        {{ column }} = changes.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    when not matched and changes._cdc_operation <> 'D' then insert ({{ quoted | join(', ') }})
        values ({% for column in quoted %}changes.{{ column }}{{ ', ' if not loop.last }}{% endfor %})
{% endmacro %}
