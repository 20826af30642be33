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
    DuckDB: one read of the target. The rows of the changed keys are copied once, with their row ids, into a
    temporary table; the feed takes its pre-images from it (and whether a key existed), and the delete finds the
    rows by row id, not by another scan. Then the I/U rows are inserted, all in the model's transaction (row ids
    hold within it). Delete + insert is several times faster than MERGE on DuckDB and means the same here.
-#}
{% macro duckdb__cdc_merge_sql(target, changes, key, columns) %}
    {%- set quoted = [] -%}
    {%- for column in columns -%}
        {%- do quoted.append(adapter.quote(column.name)) -%}
    {%- endfor -%}
    {%- set preimages = changes.incorporate(path={'identifier': changes.identifier ~ '__preimages'}) -%}
    create temporary table {{ preimages }} as
    select
        target.*,
        target.rowid as _target_row,
        changes._cdc_operation as _incoming_operation
    from {{ target }} as target
    inner join {{ changes }} as changes
        on {{ lago_cdc.key_join(key, 'changes', 'target') }};

    {{ lago_cdc.write_feed_sql(target, changes, preimages, key, columns) }}

    delete from {{ target }}
    where rowid in (select preimages._target_row from {{ preimages }} as preimages);

    insert into {{ target }} ({{ quoted | join(', ') }})
    select {{ quoted | join(', ') }}
    from {{ changes }}
    where _cdc_operation <> 'D';

    drop table {{ preimages }}
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
