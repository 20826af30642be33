{#-
    The CDC engine's state: three tables in the Bronze schema that the engine's macros read and write while models
    build, and that no model selects from. They are created by `on-run-start` (as a loader creates its own load
    table), never by a model, so they are not nodes: the lineage shows the business models only, and a selective
    build (`--select silver_loyalty__customers`) finds them without selecting them.

    - bronze_processed_files: the checkpoint, one row per lake file planned for or merged into a model fed by the
      lake (macros/bronze/checkpoint.sql).
    - change_feed_commits: DuckDB's change-feed versions, one row per commit of a change-applying model
      (macros/change_feed.sql); Spark and Databricks count versions in Delta's own history and leave it empty.
    - change_feed_positions: how far each consumer has read each producer's feed (macros/change_feed.sql).

    `create table if not exists`: a --full-refresh never drops them (a rebuilt model forgets its own rows instead),
    and a warehouse built when they were models keeps its rows.
-#}


{#- Each table's columns, declared once: the name and the type as a macro of the engine's types. -#}
{% macro state_table_columns() %}
    {%- set string = dbt.type_string() -%}
    {%- set bigint = dbt.type_bigint() -%}
    {%- set stamp = lago_cdc.declared_type('timestamptz') -%}
    {{ return({
        'bronze_processed_files': [
            ('model_name', string), ('source_name', string), ('table_name', string), ('file_name', string),
            ('row_count', bigint), ('min_cdc_timestamp', stamp), ('max_cdc_timestamp', stamp),
            ('min_cdc_sequence', bigint), ('max_cdc_sequence', bigint), ('status', string), ('merged_at', stamp),
        ],
        'change_feed_commits': [
            ('model_name', string), ('commit_version', bigint), ('commit_operation', string), ('committed_at', stamp),
        ],
        'change_feed_positions': [
            ('consumer_name', string), ('producer_name', string), ('commit_version', bigint), ('recorded_at', stamp),
        ],
    }) }}
{% endmacro %}


{#- The relation of one state table, in the schema the Bronze models get on this target. -#}
{% macro state_table(name) %}
    {%- if name not in lago_cdc.state_table_columns() -%}
        {{ exceptions.raise_compiler_error(name ~ " is not a state table of the CDC engine") }}
    {%- endif -%}
    {{ return(api.Relation.create(
        database=target.get('database'), schema=generate_schema_name('bronze', none) | trim, identifier=name)) }}
{% endmacro %}


{#-
    on-run-start of `run` and `build`, the commands that write them: every state table exists before any model
    compiles. Readers in other commands (`compile`, `test`) find a table missing only in a warehouse never built,
    where there is nothing to read.
-#}
{% macro create_state_tables() %}
    {%- if not execute or flags.WHICH not in ['run', 'build'] -%}
        {{ return('') }}
    {%- endif -%}
    {%- do run_query('create schema if not exists ' ~ (generate_schema_name('bronze', none) | trim)) -%}
    {%- for name, columns in lago_cdc.state_table_columns().items() -%}
        {%- set column_list = [] -%}
        {%- for column, data_type in columns -%}
            {%- do column_list.append(column ~ ' ' ~ data_type) -%}
        {%- endfor -%}
        {%- do run_query(
            'create table if not exists ' ~ lago_cdc.state_table(name) ~ ' (' ~ column_list | join(', ') ~ ')'
            ~ adapter.dispatch('state_table_format', 'lago_cdc')()) -%}
    {%- endfor -%}
    {%- do adapter.commit() if target.type == 'duckdb' -%}
    {{ return('') }}
{% endmacro %}

{% macro default__state_table_format() %}
    {{ return('') }}
{% endmacro %}

{#- Spark and Databricks: Delta tables, as every model there (MERGE and UPDATE need Delta) -#}
{% macro spark__state_table_format() %}
    {{ return(' using delta') }}
{% endmacro %}
