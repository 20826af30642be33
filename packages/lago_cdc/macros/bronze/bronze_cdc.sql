{#-
    The Bronze model of one declared source table: its current state, merged from the lake's CDC files.

    - Reads the table's full-load and cdc files. An incremental run reads only files not yet merged, by the
      checkpoint (macros/bronze/checkpoint.sql), which also refuses a batch that would empty the table because the
      lake holds no file of it, and a file that does not follow the table's convention.
    - Changes are ordered by (_cdc_timestamp, _cdc_sequence, file name, position in the file); the latest change
      per primary key wins. Rows are copies of one change only when key, time, sequence, operation and every
      declared column are equal (a replayed file, a row written twice): copies are one change, in the earliest
      file name. Distinct changes at one time are never dropped: the later file, then the later row, wins, on
      every build and cadence (a file that is late at one time is decided on the history of its keys, below).
    - A change equal to the Bronze row but for its file (a replay, under any name) changes nothing: no row, no
      feed entry. So _source_file names the file a change was first merged from; a --full-refresh names the
      earliest-named file holding it.
    - A declared column absent from every file read (declared after they were written) reads as NULL.
    - Incrementally, emits only changes newer than the Bronze row: 'D' rows for keys to delete, I/U rows to
      upsert (the cdc_merge strategy, which also publishes the change feed). A change older than the Bronze row
      is ignored; replaying a file changes nothing.
    - A batch that holds a change not newer than everything merged before (a late or replayed file) is decided
      on the whole history of its keys, so a late update never resurrects a row deleted by a newer change.
    - A first build or --full-refresh reads every file and keeps the latest non-deleted change per key.

    Usage, in models/bronze/<source>/bronze_<source>__<table>.sql:  {{ lago_cdc.bronze_cdc('loyalty', 'clientes') }}
-#}
{% macro bronze_cdc(source_name, table_name) %}
    {{- config(post_hook=[
        "{{ lago_cdc.checkpoint_forget_on_rebuild() }}",
        "{{ lago_cdc.checkpoint_commit_plan() }}",
        "{{ lago_cdc.record_feed_rebuild() }}",
    ]) -}}

    {%- if not execute -%}
        {#- parsing: declare the lineage; the SQL is built at execution, when the declaration is known #}
        select * from {{ source(source_name, table_name) }}
    {%- else -%}
        {{ lago_cdc.bronze_cdc_sql(source_name, table_name) }}
    {%- endif -%}
{% endmacro %}


{% macro bronze_cdc_sql(source_name, table_name) %}
    {%- set unit_test = model.resource_type == 'unit_test' -%}
    {%- if unit_test -%}
        {%- set declaration = lago_cdc.unit_test_declaration() -%}
    {%- else -%}
        {%- set declaration = lago_cdc.source_declaration(source_name, table_name) -%}
    {%- endif -%}
    {%- set key = lago_cdc.declared_primary_key(declaration) -%}
    {%- set convention = lago_cdc.cdc_convention(declaration) -%}
    {%- set columns = declaration.columns.values() | list -%}
    {%- set incremental = is_incremental() -%}
    {%- set nothing_new = false -%}

    {%- if unit_test -%}
        {#- unit tests: every row of the source fixture is the new batch -#}
        {%- set batch_reader = source(source_name, table_name) -%}
        {%- set history_reader = none -%}
    {%- else -%}
        {%- if incremental -%}
            {%- do lago_cdc.refuse_changed_column_types(this, columns, source_name, table_name) -%}
        {%- endif -%}
        {%- set batch = lago_cdc.checkpoint_plan_batch(source_name, table_name, ['full-load', 'cdc'], convention) -%}
        {%- set batch_reader = batch.reader -%}
        {#- an incremental run with no new file changes nothing (macros/materializations/nothing_new.sql) -#}
        {%- set nothing_new = incremental and not batch.files -%}
        {%- set history_reader = none -%}
        {%- if incremental and batch_reader is not none -%}
            {%- set history_reader = lago_cdc.checkpoint_history_reader(source_name, table_name, batch, convention) -%}
        {%- endif -%}
    {%- endif %}

with

batch_changes as (
    {%- if nothing_new %}
    {{ lago_cdc.nothing_new_in(lago_cdc.source_unique_id(source_name, table_name)) }}
    {%- endif %}
    {%- if batch_reader is none %}
    -- no new file in the lake: an empty batch
    {{ lago_cdc.bronze_empty_changes(columns) }}
    {%- else %}
    {{ lago_cdc.bronze_changes(batch_reader, columns, convention, lake_files=not unit_test) }}
    {%- endif %}
),

{%- if history_reader is not none %}

newest_merged as (
    -- the newest change in the files merged before: a batch holding a change not newer than it is late
    select max_cdc_timestamp, max(max_cdc_sequence) as max_cdc_sequence
    from {{ lago_cdc.state_table('bronze_processed_files') }}
    where
        model_name = {{ lago_cdc.sql_string(this.identifier) }}
        and status = 'merged'
        and max_cdc_timestamp = (
            select max(max_cdc_timestamp) from {{ lago_cdc.state_table('bronze_processed_files') }}
            where model_name = {{ lago_cdc.sql_string(this.identifier) }} and status = 'merged'
        )
    group by max_cdc_timestamp
),

late_batch as (
    select 1 as is_late
    from batch_changes
    inner join newest_merged
        on
            batch_changes._cdc_timestamp < newest_merged.max_cdc_timestamp
            or (
                batch_changes._cdc_timestamp = newest_merged.max_cdc_timestamp
                and batch_changes._cdc_sequence <= newest_merged.max_cdc_sequence
            )
),

history_changes as (
    -- a late or replayed file: the earlier changes of its keys decide together with it
    select history.*
    from ({{ lago_cdc.bronze_changes(history_reader, columns, convention, lake_files=true) }}) as history
    where exists (
        select 1 from batch_changes
        where {{ lago_cdc.key_join(key, 'batch_changes', 'history') }}
    )
),
{%- endif %}

changes as (
    select * from batch_changes
    {%- if history_reader is not none %}
    union all
    select * from history_changes
    {%- endif %}
),

distinct_changes as (
    -- copies of one change (same key, time, sequence, operation and content: a replayed file, a row written
    -- twice) are one change, in the earliest file name; rows that differ in content are distinct changes
    {{ lago_cdc.first_per_group(
        '(select * from changes where _cdc_operation is not null)',
        lago_cdc.change_identity(key, columns),
        '_source_file, _cdc_position',
        '_copy_rank') }}
),

latest as (
    {{ lago_cdc.first_per_group(
        'distinct_changes',
        lago_cdc.key_columns(key),
        '_cdc_timestamp desc, _cdc_sequence desc, _source_file desc, _cdc_position desc',
        '_change_rank') }}
),

{%- if incremental %}

current_rows as (
    {#- a column declared since the last build is not in Bronze yet (this build appends it): NULL in its rows #}
    {%- set held_columns = none if unit_test else lago_cdc.relation_column_names(this) %}
    select
        {%- for column in columns %}
        {%- if held_columns is none or column.name | lower in held_columns %}
        {{ adapter.quote(column.name) }},
        {%- else %}
        cast(null as {{ lago_cdc.declared_type(column.data_type) }}) as {{ adapter.quote(column.name) }},
        {%- endif %}
        {%- endfor %}
        _cdc_operation,
        _cdc_timestamp,
        _cdc_sequence,
        _source_file
    from {{ this }}
),

applicable as (
    -- insert when absent; update or delete when later than the Bronze row in (time, sequence, file) and not a
    -- copy of it (a replay changes nothing, whatever its file name); ignore anything older
    select latest.*
    from latest
    left join current_rows
        on {{ lago_cdc.key_join(key, 'latest', 'current_rows') }}
    where
        (current_rows._cdc_timestamp is null and latest._cdc_operation <> 'D')
        or (
            (
                latest._cdc_timestamp > current_rows._cdc_timestamp
                or (
                    latest._cdc_timestamp = current_rows._cdc_timestamp
                    and latest._cdc_sequence > current_rows._cdc_sequence
                )
                or (
                    latest._cdc_timestamp = current_rows._cdc_timestamp
                    and latest._cdc_sequence = current_rows._cdc_sequence
                    and latest._source_file > current_rows._source_file
                )
            )
            and not (
                latest._cdc_timestamp = current_rows._cdc_timestamp
                and latest._cdc_sequence = current_rows._cdc_sequence
                and latest._cdc_operation = current_rows._cdc_operation
                {%- for column in columns %}
                and {{ lago_cdc.null_safe_equal(
                    'latest.' ~ adapter.quote(column.name), 'current_rows.' ~ adapter.quote(column.name)) }}
                {%- endfor %}
            )
        )
),
{%- else %}

applicable as (
    select * from latest
    where _cdc_operation <> 'D'
),
{%- endif %}

final as (
    select
        {%- for column in columns %}
        {{ adapter.quote(column.name) }},
        {%- endfor %}
        _cdc_operation,
        _cdc_timestamp,
        _cdc_sequence,
        _source_file,
        {{ dbt.current_timestamp() }} as _loaded_at
    from applicable
)

select * from final
{%- endmacro %}


{#-
    Schema drift: a column declared after the files were written is in none of them, so it is selected as NULL;
    union_by_name already gives NULL when only some of the files lack it.
-#}
{% macro bronze_changes(relation, columns, convention, lake_files) -%}
    {%- set relation, present = lago_cdc.with_declared_columns(relation, columns) if lake_files else [relation, none] -%}
    select
        {{ convention.operation }} as _cdc_operation,
        {{ convention.timestamp }} as _cdc_timestamp,
        {{ convention.sequence }} as _cdc_sequence,
        {%- for column in columns %}
        {%- set name = adapter.quote(column.name) %}
        {%- if present is none or column.name | lower in present %}
        cast({{ name }} as {{ lago_cdc.declared_type(column.data_type) }}) as {{ name }},
        {%- else %}
        cast(null as {{ lago_cdc.declared_type(column.data_type) }}) as {{ name }},
        {%- endif %}
        {%- endfor %}
        {%- if lake_files %}
        {{ lago_cdc.lake_file_id_sql('cast(filename as ' ~ dbt.type_string() ~ ')') }} as _source_file,
        {%- else %}
        cast(filename as {{ dbt.type_string() }}) as _source_file,
        {%- endif %}
        {#- a unit test's fixture gives file_row_number only where the order of its rows needs it (no sequence) #}
        {%- if lake_files or convention.get('ordered_by_position') %}
        cast(file_row_number as {{ dbt.type_bigint() }}) as _cdc_position
        {%- else %}
        cast(0 as {{ dbt.type_bigint() }}) as _cdc_position
        {%- endif %}
    from {{ relation }}
{%- endmacro %}


{% macro bronze_empty_changes(columns) -%}
    select
        cast(null as {{ dbt.type_string() }}) as _cdc_operation,
        {{ lago_cdc.cast_to_timestamp_tz('null') }} as _cdc_timestamp,
        cast(null as {{ dbt.type_bigint() }}) as _cdc_sequence,
        {%- for column in columns %}
        cast(null as {{ lago_cdc.declared_type(column.data_type) }}) as {{ adapter.quote(column.name) }},
        {%- endfor %}
        cast(null as {{ dbt.type_string() }}) as _source_file,
        cast(null as {{ dbt.type_bigint() }}) as _cdc_position
    where 1 = 0
{%- endmacro %}


{#- a partition by, not a join: NULLs fall into one partition, so copies holding NULLs match -#}
{% macro change_identity(key, columns) -%}
    {{ lago_cdc.key_columns(key) }}, _cdc_timestamp, _cdc_sequence, _cdc_operation
    {%- for column in columns if column.name not in key %}, {{ adapter.quote(column.name) }}{% endfor -%}
{%- endmacro %}


{#- one spelling for every engine: Spark's <=> and DuckDB's IS NOT DISTINCT FROM differ -#}
{% macro null_safe_equal(left, right) -%}
    ({{ left }} = {{ right }} or ({{ left }} is null and {{ right }} is null))
{%- endmacro %}


{#-
    Merging into the old type would fail on the first value only the new type holds (a bigint in an integer
    column), or silently keep the old type. typeof() compares in the engine's own words.
-#}
{% macro refuse_changed_column_types(relation, columns, source_name, table_name) %}
    {%- set held = {} -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
        {%- do held.update({column.name | lower: column.dtype | lower}) -%}
    {%- endfor -%}
    {%- set compared = [] -%}
    {%- for column in columns if column.name | lower in held and column.data_type -%}
        {%- do compared.append(column) -%}
    {%- endfor -%}
    {%- if not compared -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set types_sql -%}
        select
            {%- for column in compared %}
            typeof(cast(null as {{ lago_cdc.declared_type(column.data_type) }})) as type_{{ loop.index }}
            {{- ',' if not loop.last }}
            {%- endfor %}
    {%- endset -%}
    {%- set declared = run_query(types_sql).rows[0] -%}
    {%- for column in compared -%}
        {%- set want = declared[loop.index0] | lower -%}
        {%- set have = held[column.name | lower] -%}
        {%- if want != have -%}
            {{ exceptions.raise_compiler_error(
                relation.identifier ~ ": column " ~ column.name ~ " of " ~ source_name ~ "." ~ table_name
                ~ " is declared " ~ column.data_type ~ " (" ~ want ~ "), but the table holds it as " ~ have
                ~ ". A declared type change is applied by rebuilding the table and what reads it:"
                ~ " dbt build --full-refresh --select bronze_" ~ source_name ~ "__" ~ table_name ~ "+ history_"
                ~ source_name ~ "__" ~ table_name ~ "+ (docs/dbt.md, Schema drift). Nothing was changed.") }}
        {%- endif -%}
    {%- endfor -%}
{% endmacro %}
