{#-
    The Bronze model of one table of an events source (`meta.capture: events`, e.g. hotmart): every distinct
    event that arrived, once.

    - Reads the table's files `<LAKE_URI>/raw/<source>/events/<table>/<table>_<batch>.parquet`. An incremental
      run reads only files not yet loaded, by the checkpoint (macros/bronze/checkpoint.sql), so a file made only
      of re-sent events is read once.
    - An event is identified by its declared columns (`_event_id`, a hash of them): an identical event re-sent
      later is the same event, and Bronze keeps its first arrival (smallest `_ingested_at`, then `_batch_id`,
      then file). A copy that comes first in that order replaces the one held (an update on `_event_id`), so an
      incremental run and a `--full-refresh` hold the same rows, whatever order the files came in.
    - Nothing is updated or deleted otherwise: which state of a purchase wins is decided downstream, per day.
    - It is a change-feed producer like the CDC Bronze (strategy `cdc_merge`, macros/change_feed.sql): every
      event it adds (`_cdc_operation` 'I') or replaces is in its feed, so Silver reads only the new events.

    Usage, in models/bronze/<source>/bronze_<source>__<table>.sql:  {{ lago_cdc.bronze_events('hotmart', 'purchase') }}
-#}
{% macro bronze_events(source_name, table_name) %}
    {{- config(
        materialized='incremental',
        incremental_strategy='cdc_merge',
        unique_key='_event_id',
        on_schema_change='append_new_columns',
        post_hook=[
            "{{ lago_cdc.checkpoint_forget_on_rebuild() }}",
            "{{ lago_cdc.checkpoint_commit_plan() }}",
            "{{ lago_cdc.record_feed_rebuild() }}",
        ],
    ) -}}

    {%- if not execute -%}
        {#- parsing: declare the lineage; the SQL is built at execution, when the declaration is known #}
        select * from {{ source(source_name, table_name) }}
    {%- else -%}
        {{ lago_cdc.bronze_events_sql(source_name, table_name) }}
    {%- endif -%}
{% endmacro %}


{% macro bronze_events_sql(source_name, table_name) %}
    {%- if model.resource_type == 'unit_test' -%}
        {#- unit tests run without the dbt graph: the test overrides unit_test_declaration (macros/bronze) -#}
        {%- set declaration = lago_cdc.unit_test_declaration() -%}
    {%- else -%}
        {%- set declaration = lago_cdc.source_declaration(source_name, table_name) -%}
    {%- endif -%}
    {%- set columns = declaration.columns.values() | list -%}
    {%- set incremental = is_incremental() -%}

    {%- if model.resource_type == 'unit_test' -%}
        {%- set reader = source(source_name, table_name) -%}
    {%- else -%}
        {%- set convention = {
            'operation': none,
            'timestamp': lago_cdc.cast_to_timestamp_tz('_ingested_at'),
            'sequence': none,
            'columns': ['_ingested_at', '_batch_id'],
            'description': 'events with _ingested_at and _batch_id',
        } -%}
        {%- set batch = lago_cdc.checkpoint_plan_batch(source_name, table_name, ['events'], convention) -%}
        {%- set reader = batch.reader -%}
    {%- endif %}
    {#- an incremental run with no new file adds nothing (macros/materializations/nothing_new.sql) -#}
    {%- set nothing_new = incremental and model.resource_type != 'unit_test' and not batch.files -%}
    {%- set present = none -%}
    {%- if reader is not none and model.resource_type != 'unit_test' -%}
        {%- set reader, present = lago_cdc.with_declared_columns(reader, columns) -%}
    {%- endif %}

with

source as (
    {%- if nothing_new %}
    {{ lago_cdc.nothing_new_in(lago_cdc.source_unique_id(source_name, table_name)) }}
    {%- endif %}
    {%- if reader is none %}
    -- no new file in the lake: an empty batch with the declared types
    select
        {{ lago_cdc.cast_to_timestamp_tz('null') }} as _ingested_at,
        cast(null as {{ dbt.type_string() }}) as _batch_id,
        {%- for column in columns %}
        cast(null as {{ lago_cdc.declared_type(column.data_type) }}) as {{ adapter.quote(column.name) }},
        {%- endfor %}
        cast(null as {{ dbt.type_string() }}) as _source_file
    where 1 = 0
    {%- else %}
    select
        {{ lago_cdc.cast_to_timestamp_tz('_ingested_at') }} as _ingested_at,
        cast(_batch_id as {{ dbt.type_string() }}) as _batch_id,
        {%- for column in columns %}
        {%- set value = adapter.quote(column.name) if present is none or column.name | lower in present else 'null' %}
        cast({{ value }} as {{ lago_cdc.declared_type(column.data_type) }}) as {{ adapter.quote(column.name) }},
        {%- endfor %}
        {%- if model.resource_type == 'unit_test' %}
        cast('unit_test' as {{ dbt.type_string() }}) as _source_file
        {%- else %}
        {{ lago_cdc.lake_file_id_sql('cast(filename as ' ~ dbt.type_string() ~ ')') }} as _source_file
        {%- endif %}
    from {{ reader }}
    {%- endif %}
),

identified as (
    select
        {{ lago_cdc.event_fingerprint(columns | map(attribute='name') | list) }} as _event_id,
        *
    from source
),

ranked as (
    select
        *,
        row_number() over (
            partition by _event_id
            order by _ingested_at, _batch_id, _source_file
        ) as arrival_rank
    from identified
),

deduplicated as (
    select * from ranked
    where arrival_rank = 1
),

final as (
    select
        _event_id,
        _ingested_at,
        _batch_id,
        {%- for column in columns %}
        {{ adapter.quote(column.name) }},
        {%- endfor %}
        _source_file,
        -- an event is only ever added (or replaced by a copy that comes first): always an insert
        cast('I' as {{ dbt.type_string() }}) as _cdc_operation,
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }} as _loaded_at
    from deduplicated
    {%- if incremental %}
    -- a copy replaces the held one only if it comes first in the full refresh's order (arrival, batch, file)
    where not exists (
        select 1 from {{ this }} as loaded
        where
            loaded._event_id = deduplicated._event_id
            and (
                loaded._ingested_at < deduplicated._ingested_at
                or (
                    loaded._ingested_at = deduplicated._ingested_at
                    and (
                        loaded._batch_id < deduplicated._batch_id
                        or (
                            loaded._batch_id = deduplicated._batch_id
                            and loaded._source_file <= deduplicated._source_file
                        )
                    )
                )
            )
    )
    {%- endif %}
)

select * from final
{% endmacro %}


{% macro event_fingerprint(column_names) %}
    {{ return(adapter.dispatch('event_fingerprint', 'lago_cdc')(column_names)) }}
{% endmacro %}

{% macro default__event_fingerprint(column_names) -%}
    md5(concat_ws(
        '|',
        {%- for name in column_names %}
        coalesce(cast({{ adapter.quote(name) }} as {{ dbt.type_string() }}) || '.', '~'){{ ',' if not loop.last }}
        {%- endfor %}
    ))
{%- endmacro %}
