{#-
    Incremental strategy `cdc_merge` of the bronze models. The model's SQL has already kept only the changes
    that win over the Bronze rows; applying them is: delete the rows of every changed key, insert the I/U rows.
    That is MERGE's semantics (D deletes, I/U update or insert); on DuckDB delete + insert is several times faster
    than MERGE (see stack-notes), other engines use MERGE.
-#}
{% macro get_incremental_cdc_merge_sql(arg_dict) %}
    {%- set source_name, table_name = model.sources[0] -%}
    {%- set key = lago_mago.declared_primary_key(lago_mago.source_declaration(source_name, table_name)) -%}
    {{ return(adapter.dispatch('cdc_merge_sql', 'lago_mago')(
        arg_dict.target_relation, arg_dict.temp_relation, key, arg_dict.dest_columns)) }}
{% endmacro %}


{% macro duckdb__cdc_merge_sql(target, changes, key, columns) %}
    {%- set quoted = [] -%}
    {%- for column in columns -%}
        {%- do quoted.append(adapter.quote(column.name)) -%}
    {%- endfor -%}
    delete from {{ target }}
    where exists (
        select 1 from {{ changes }} as changes
        where {% for column in key %}changes.{{ adapter.quote(column) }} = {{ target }}.{{ adapter.quote(column) }}
            {{- ' and ' if not loop.last }}{% endfor %}
    );

    insert into {{ target }} ({{ quoted | join(', ') }})
    select {{ quoted | join(', ') }}
    from {{ changes }}
    where _cdc_operation <> 'D'
{% endmacro %}


{% macro default__cdc_merge_sql(target, changes, key, columns) %}
    {%- set quoted = [] -%}
    {%- for column in columns -%}
        {%- do quoted.append(adapter.quote(column.name)) -%}
    {%- endfor -%}
    merge into {{ target }} as target
    using {{ changes }} as changes
        on {% for column in key %}target.{{ adapter.quote(column) }} = changes.{{ adapter.quote(column) }}
            {{- ' and ' if not loop.last }}{% endfor %}
    when matched and changes._cdc_operation = 'D' then delete
    when matched then update set
        {%- for column in quoted %}
        {{ column }} = changes.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    when not matched and changes._cdc_operation <> 'D' then insert ({{ quoted | join(', ') }})
        values ({% for column in quoted %}changes.{{ column }}{{ ', ' if not loop.last }}{% endfor %})
{% endmacro %}
