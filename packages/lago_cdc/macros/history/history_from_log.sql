{#-
    The SCD2 history of one declared source table, derived from the lake's change log (not from Bronze's state
    at build time), with dbt snapshot columns: one version per captured change of a row, in the order of
    (_cdc_timestamp, _cdc_sequence, _source_file, _cdc_position), as in Bronze.

    - An insert or update opens a version at its capture time; the next change of the key closes it.
    - A delete closes the open version at the delete's capture time and is itself a deletion record
      (dbt_is_deleted 'True', valid from the delete until a re-insert opens a new version).
    - A late change is slotted into place: each build re-derives the versions of the keys its new files touch,
      from their versions already held plus the new changes, so neighbours' validity is adjusted and intervals
      never overlap or invert. A change Bronze ignores as older still lands where it belongs.
    - The same change read twice (a replayed file, under any name) is one version and rewrites nothing: a change
      is (key, time, sequence, operation, content). Changes that differ in content at one time are distinct
      versions (the earlier one valid for no time), never dropped.
    - Any build cadence gives the same history, and `dbt build --full-refresh --select tag:history` rebuilds it
      from the log with the identical result.

    Usage, in models/history/<source>/history_<source>__<table>.sql:  {{ lago_cdc.history_from_log('loyalty', 'clientes') }}
-#}
{% macro history_from_log(source_name, table_name) %}
    {{- config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='dbt_scd_id',
        on_schema_change='append_new_columns',
        post_hook=[
            "{{ lago_cdc.checkpoint_forget_on_rebuild() }}",
            "{{ lago_cdc.checkpoint_commit_plan() }}",
        ],
    ) -}}

    {%- if not execute -%}
        select * from {{ source(source_name, table_name) }}
    {%- else -%}
        {{ lago_cdc.history_from_log_sql(source_name, table_name) }}
    {%- endif -%}
{% endmacro %}


{% macro history_from_log_sql(source_name, table_name) %}
    {%- set declaration = lago_cdc.source_declaration(source_name, table_name) -%}
    {%- set key = lago_cdc.declared_primary_key(declaration) -%}
    {%- set convention = lago_cdc.cdc_convention(declaration) -%}
    {%- set columns = declaration.columns.values() | list -%}
    {%- set incremental = is_incremental() -%}
    {#- a column declared after the history was built: NULL in the versions held, until this build appends it -#}
    {%- set held_columns = lago_cdc.relation_column_names(this) if incremental else [] -%}
    {%- if incremental -%}
        {%- do lago_cdc.refuse_changed_column_types(this, columns, source_name, table_name) -%}
    {%- endif -%}
    {%- set batch = lago_cdc.checkpoint_plan_batch(source_name, table_name, ['full-load', 'cdc'], convention) -%}
    {#- an incremental run with no new file changes nothing (macros/materializations/nothing_new.sql) -#}
    {%- set nothing_new = incremental and not batch.files -%}
    {%- set key_columns = lago_cdc.key_columns(key) -%}
    {%- set key_matches = lago_cdc.key_join(key, 'held', 'batch_changes') %}

with

batch_changes as (
    {%- if nothing_new %}
    {{ lago_cdc.nothing_new_in(lago_cdc.source_unique_id(source_name, table_name)) }}
    {%- endif %}
    {%- if batch.reader is none %}
    -- no new file in the lake: an empty batch
    {{ lago_cdc.bronze_empty_changes(columns) }}
    {%- else %}
    select * from ({{ lago_cdc.bronze_changes(batch.reader, columns, convention, lake_files=true) }}) as changes
    where _cdc_operation is not null
    {%- endif %}
),

identified_batch as (
    select
        *,
        {{ lago_cdc.history_scd_id(key, columns) }} as _change_id,
        {{ lago_cdc.history_scd_id(key, columns) }} as dbt_scd_id
    from batch_changes
),

{%- if incremental %}

held_of_batch_keys as (
    -- the versions already held for the keys this batch names, as the changes they were made from (their
    -- identity recomputed: a column declared since is NULL in them, as in a change read again)
    -- a held version keeps its stored dbt_scd_id, so delete+insert replaces it in place
    select *, {{ lago_cdc.history_scd_id(key, columns) }} as _change_id
    from (
        select
            held._cdc_operation,
            held._cdc_timestamp,
            held._cdc_sequence,
            {%- for column in columns %}
            {%- if column.name | lower in held_columns %}
            held.{{ adapter.quote(column.name) }},
            {%- else %}
            cast(null as {{ lago_cdc.declared_type(column.data_type) }}) as {{ adapter.quote(column.name) }},
            {%- endif %}
            {%- endfor %}
            held._source_file,
            {%- if '_cdc_position' in held_columns %}
            held._cdc_position,
            {%- else %}
            cast(null as {{ dbt.type_bigint() }}) as _cdc_position,
            {%- endif %}
            held.dbt_scd_id
        from {{ this }} as held
        where exists (select 1 from batch_changes where {{ key_matches }})
    ) as held
),

new_changes as (
    -- a change already held (a replayed file, under any name) is no new version and touches nothing
    select * from identified_batch
    where not exists (select 1 from held_of_batch_keys as held where held._change_id = identified_batch._change_id)
),

held_changes as (
    select held.* from held_of_batch_keys as held
    where exists (
        select 1 from new_changes as batch_changes
        where {{ key_matches }}
    )
),
{%- endif %}

changes as (
    {%- if incremental %}
    select * from new_changes
    union all
    select * from held_changes
    {%- else %}
    select * from identified_batch
    {%- endif %}
),

deduplicated as (
    -- copies of one change (equal key, time, sequence, operation and content) are one version, in the earliest
    -- file name as in Bronze; changes that differ in content are distinct versions, never dropped
    {{ lago_cdc.first_per_group('changes', '_change_id', '_source_file, _cdc_position', '_copy_rank') }}
),

versions as (
    select
        *,
        lead(_cdc_timestamp) over (
            partition by {{ key_columns }}
            order by _cdc_timestamp, _cdc_sequence, _source_file, _cdc_position
        ) as next_change_at
    from deduplicated
),

final as (
    select
        {%- for column in columns %}
        {{ adapter.quote(column.name) }},
        {%- endfor %}
        _cdc_operation,
        _cdc_timestamp,
        _cdc_sequence,
        _source_file,
        _cdc_position,
        {{ dbt.current_timestamp() }} as _loaded_at,
        dbt_scd_id,
        _cdc_timestamp as dbt_updated_at,
        _cdc_timestamp as dbt_valid_from,
        next_change_at as dbt_valid_to,
        case when _cdc_operation = 'D' then 'True' else 'False' end as dbt_is_deleted
    from versions
)

select * from final
{%- endmacro %}


{#-
    A change's identity: its key, capture time, sequence, operation and content (not its file: a replay is the
    same version; two changes that differ in content at one time are two). Each value is named and
    length-prefixed; a NULL adds nothing (concat_ws skips it), so a column declared later, NULL in the changes
    captured before, leaves their identity as it was.
-#}
{% macro history_scd_id(key, columns) -%}
    md5(concat_ws(
        '|',
        {%- for column in key %}
        {{ lago_cdc.history_id_part(column, adapter.quote(column)) }},
        {%- endfor %}
        cast({{ lago_cdc.epoch_microseconds('_cdc_timestamp') }} as {{ dbt.type_string() }}),
        cast(_cdc_sequence as {{ dbt.type_string() }}),
        _cdc_operation
        {%- for column in columns if column.name not in key %},
        {{ lago_cdc.history_id_part(column.name, adapter.quote(column.name)) }}
        {%- endfor %}
    ))
{%- endmacro %}

{% macro history_id_part(name, expression) -%}
    {%- set text = 'cast(' ~ expression ~ ' as ' ~ dbt.type_string() ~ ')' -%}
    {{ lago_cdc.sql_string(name ~ ':') }} || cast(length({{ text }}) as {{ dbt.type_string() }}) || ':' || {{ text }}
{%- endmacro %}
