{#-
    The checkpoint: which lake files each model fed by the lake (Bronze, history, event Bronze) has consumed,
    one row per (model, file) in model `bronze_processed_files`, the analogue of a streaming checkpoint.

    A run plans its batch when its SQL is built: it lists the table's files, keeps those not yet consumed, checks
    that they follow the table's convention, and writes them as `planned` rows. The model's post-hook, inside
    the model's transaction, turns its planned rows into `merged` ones. So the plan travels from build time to
    the post-hook through the warehouse itself, and a file published while the model ran is never recorded
    without having been read: it is in no plan.
-#}


{% macro checkpoint_consumed_files(model_name) %}
    {%- set checkpoint = lago_cdc.state_table('bronze_processed_files') -%}
    {%- if load_relation(checkpoint) is none -%}
        {{ return({'ids': set([]), 'count': 0}) }}
    {%- endif -%}
    {%- set consumed_sql -%}
        select file_name
        from {{ checkpoint }}
        where model_name = {{ lago_cdc.sql_string(model_name) }} and status = 'merged'
    {%- endset -%}
    {%- set ids = set(run_query(consumed_sql).columns[0].values()) -%}
    {{ return({'ids': ids, 'count': ids | length}) }}
{% endmacro %}


{#-
    Every check runs before the plan is written: a refused build changes nothing, and no file is ever recorded as
    consumed that was not applied. A lake without any of the table's files is a mistyped LAKE_URI or a deleted
    folder far more often than an intended truncation, hence the refusals unless allow_truncate.
-#}
{% macro checkpoint_plan_batch(source_name, table_name, folders, convention) %}
    {%- set incremental = is_incremental() -%}
    {%- set files = lago_cdc.list_lake_files(source_name, table_name, folders) -%}
    {%- set consumed = lago_cdc.checkpoint_consumed_files(this.identifier) if incremental
        else {'ids': set([]), 'count': 0} -%}
    {#- one pass, a set lookup and string slicing per file (no macro call): linear in the number of files -#}
    {%- set new_files = [] -%}
    {%- set consumed_files = [] -%}
    {%- for file in files -%}
        {%- set rooted = '/' ~ file -%}
        {%- if rooted[rooted.rfind('/raw/') + 1:] in consumed.ids -%}
            {%- do consumed_files.append(file) -%}
        {%- else -%}
            {%- do new_files.append(file) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set where = lago_cdc.lake_filesystem_uri() ~ '/raw/' ~ source_name ~ '/{' ~ folders | join(',') ~ '}/'
        ~ table_name -%}

    {%- if not var('allow_truncate', false) -%}
        {%- if not files and not incremental and load_relation(this) is not none -%}
            {%- set held = run_query('select count(*) from ' ~ this).rows[0][0] -%}
            {%- if held > 0 -%}
                {{ exceptions.raise_compiler_error(
                    this.identifier ~ ": the lake holds no file of " ~ source_name ~ "." ~ table_name
                    ~ " (looked in " ~ where ~ "), but the table holds " ~ held ~ " rows: rebuilding would empty it."
                    ~ " Check LAKE_URI; to empty it on purpose, add --vars '{allow_truncate: true}'."
                    ~ " Nothing was changed.") }}
            {%- endif -%}
        {%- endif -%}
        {%- if incremental and consumed.count > 0 -%}
            {%- if not consumed_files -%}
                {{ exceptions.raise_compiler_error(
                    this.identifier ~ ": the lake holds none of the " ~ consumed.count ~ " files of "
                    ~ source_name ~ "." ~ table_name ~ " this warehouse already merged (looked in " ~ where
                    ~ ", found " ~ files | length ~ " files). Is LAKE_URI the lake this warehouse was built from?"
                    ~ " To accept it, add --vars '{allow_truncate: true}'. Nothing was changed.") }}
            {%- endif -%}
        {%- endif -%}
        {%- do lago_cdc.checkpoint_check_published(source_name, table_name, folders, files, consumed, where) -%}
    {%- endif -%}

    {%- set new_reader = lago_cdc.read_lake_files(new_files) if new_files else none -%}

    {%- if new_reader is not none -%}
        {%- do lago_cdc.checkpoint_check_convention(new_reader, new_files, source_name, table_name, convention) -%}
        {%- if flags.WHICH in ['run', 'build'] -%}
            {%- do lago_cdc.checkpoint_write_plan(new_reader, source_name, table_name, convention) -%}
        {%- endif -%}
    {%- elif flags.WHICH in ['run', 'build'] -%}
        {%- do lago_cdc.checkpoint_write_plan(none, source_name, table_name, convention) -%}
    {%- endif -%}
    {#- the model reads its batch through the plan just written (lake.sql, read_checkpoint_files) -#}
    {%- set reader = lago_cdc.read_checkpoint_files(source_name, table_name, 'planned', new_files, files) -%}
    {{ return({
        'files': new_files, 'listed': files, 'reader': reader, 'consumed': consumed, 'consumed_files': consumed_files,
    }) }}
{% endmacro %}


{#-
    Every file the lake's capture log lists as published for the table (macros/lake.sql) must be in the listing,
    or the build would silently lose its changes: a deleted full load would leave Bronze with the keys changed
    since, a relative LAKE_URI resolved elsewhere an empty table. A first build or --full-refresh needs every
    published file. An incremental run needs only those it has not merged yet: a file merged earlier and removed
    from the lake since (retention) is already in the warehouse, but the next --full-refresh refuses without it.
    A table without a capture log (a lake older than the log) is checked by the guards of checkpoint_plan_batch
    only. `--vars '{allow_missing_files: true}'` builds without the missing files, on purpose (so does
    allow_truncate, which accepts losing every file).
-#}
{% macro checkpoint_check_published(source_name, table_name, folders, files, consumed, where) %}
    {%- if var('allow_missing_files', false) -%}
        {{ return('') }}
    {%- endif -%}
    {%- set published = lago_cdc.lake_published_files(source_name, table_name, folders) -%}
    {%- if not published -%}
        {{ return('') }}
    {%- endif -%}
    {%- set listed = [] -%}
    {%- for file in files -%}
        {%- do listed.append(lago_cdc.lake_file_id(file)) -%}
    {%- endfor -%}
    {%- set listed = set(listed) -%}
    {%- set missing = [] -%}
    {%- for key in published if key not in listed and key not in consumed.ids -%}
        {%- do missing.append(key) -%}
    {%- endfor -%}
    {%- if missing -%}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ ": " ~ missing | length ~ " of the " ~ published | length ~ " files the capture log of "
            ~ source_name ~ "." ~ table_name ~ " lists as published are not in lake " ~ lago_cdc.lake_uri()
            ~ " (looked in " ~ where ~ ", found " ~ files | length ~ " files): " ~ missing[:5] | join(', ')
            ~ (" and " ~ (missing | length - 5) ~ " more" if missing | length > 5 else "")
            ~ ". Building without them would lose their changes. Check LAKE_URI, or restore the files from a backup"
            ~ " of the lake; to build without them on purpose, add --vars '{allow_missing_files: true}'."
            ~ " Nothing was changed.") }}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}


{% macro checkpoint_check_convention(reader, files, source_name, table_name, convention) %}
    {%- set present = lago_cdc.relation_column_names(reader) -%}
    {%- for column in convention.columns if column | lower not in present -%}
        {{ exceptions.raise_compiler_error(
            source_name ~ "." ~ table_name ~ ": no new file holds column " ~ column ~ " of the table's CDC convention"
            ~ " (first file: " ~ lago_cdc.lake_file_id(files[0]) ~ "). Declare the file's convention"
            ~ " under meta.cdc, or move the file out of the table's folder. Nothing was changed.") }}
    {%- endfor -%}
    {%- set checks = [('time', convention.timestamp)]
        + ([('sequence', convention.sequence)] if convention.sequence else [])
        + ([('operation', convention.operation)] if convention.operation else [])
        + convention.get('row_checks', []) -%}
    {%- set bad_sql -%}
        select
            filename,
            {%- for name, expression in checks %}
            sum(case when {{ expression }} is null then 1 else 0 end) as missing_{{ loop.index }},
            {%- endfor %}
            count(*) as row_count
        from {{ reader }}
        group by filename
        having
            {%- for name, expression in checks %}
            sum(case when {{ expression }} is null then 1 else 0 end) > 0{{ ' or' if not loop.last }}
            {%- endfor %}
        order by filename
        limit 1
    {%- endset -%}
    {%- set bad = run_query(bad_sql).rows -%}
    {%- if bad -%}
        {%- set missing = [] -%}
        {%- set convention_fault = namespace(found=false) -%}
        {%- for name, expression in checks -%}
            {%- if bad[0][loop.index] > 0 -%}
                {%- do missing.append(bad[0][loop.index] ~ " rows without a valid " ~ name) -%}
                {%- set convention_fault.found = convention_fault.found or not name.startswith('key ') -%}
            {%- endif -%}
        {%- endfor -%}
        {#- a row without its key is a broken change, not another convention: the advice says which -#}
        {%- set fix = " Declare the file's convention under meta.cdc, or move the file out of the table's folder."
            if convention_fault.found else
            " A change must carry its primary key: correct the file, or move it out of the table's folder." -%}
        {{ exceptions.raise_compiler_error(
            source_name ~ "." ~ table_name ~ ": lake file " ~ lago_cdc.lake_file_id(bad[0][0])
            ~ " does not follow the table's CDC convention (" ~ convention.description ~ "): "
            ~ missing | join(', ') ~ " of " ~ bad[0][-1] ~ "." ~ fix ~ " Nothing was changed.") }}
    {%- endif -%}
{% endmacro %}


{#-
    Where the plan waits for the post-hook differs by engine. DuckDB: in the checkpoint itself, as `planned` rows
    the model's statement reads and its post-hook turns into `merged` ones, in one transaction. Spark has no
    transaction and names the batch's files in the SQL it compiles, so the rows go in once, as `merged`, by the
    post-hook: the plan waits in a temporary view of the session (a Delta commit costs seconds on a small cluster;
    this way a model writes one instead of three). A run that fails before its post-hook has recorded nothing, as
    a DuckDB run rolled back. Databricks keeps the planned rows: the view's lifetime there is not verified here.
-#}
{% macro checkpoint_write_plan(reader, source_name, table_name, convention) %}
    {{ return(adapter.dispatch('checkpoint_write_plan', 'lago_cdc')(reader, source_name, table_name, convention)) }}
{% endmacro %}

{% macro default__checkpoint_write_plan(reader, source_name, table_name, convention) %}
    {%- set checkpoint = lago_cdc.state_table('bronze_processed_files') -%}
    {%- call statement('checkpoint_forget_plan') -%}
        delete from {{ checkpoint }}
        where model_name = {{ lago_cdc.sql_string(this.identifier) }} and status = 'planned'
    {%- endcall -%}
    {%- if reader is not none -%}
        {%- call statement('checkpoint_plan') -%}
            insert into {{ checkpoint }} ({{ lago_cdc.checkpoint_plan_columns() | join(', ') }})
            {{ lago_cdc.checkpoint_plan_rows(reader, source_name, table_name, convention, 'planned') }}
        {%- endcall -%}
    {%- endif -%}
{% endmacro %}

{% macro spark__checkpoint_write_plan(reader, source_name, table_name, convention) %}
    {%- call statement('checkpoint_plan') -%}
        create or replace temporary view {{ lago_cdc.checkpoint_plan_view() }} as
        {{ lago_cdc.checkpoint_plan_rows(reader, source_name, table_name, convention, 'merged') }}
    {%- endcall -%}
{% endmacro %}

{% macro databricks__checkpoint_write_plan(reader, source_name, table_name, convention) %}
    {{ return(lago_cdc.default__checkpoint_write_plan(reader, source_name, table_name, convention)) }}
{% endmacro %}


{#- The session's view holding a Spark model's plan until its post-hook. -#}
{% macro checkpoint_plan_view() %}
    {{ return('lago_mago_plan__' ~ this.schema ~ '__' ~ this.identifier) }}
{% endmacro %}


{#- The checkpoint's columns, in the order a plan's rows hold them (state_tables.sql declares them). -#}
{% macro checkpoint_plan_columns() %}
    {%- set names = [] -%}
    {%- for name, type in lago_cdc.state_table_columns()['bronze_processed_files'] -%}
        {%- do names.append(name) -%}
    {%- endfor -%}
    {{ return(names) }}
{% endmacro %}


{#-
    One checkpoint row per file of the batch (row count, first and last change time and sequence), with `status`;
    `merged` rows are stamped when the statement reading this runs. No reader: no row.
-#}
{% macro checkpoint_plan_rows(reader, source_name, table_name, convention, status) %}
    {%- set bigint = dbt.type_bigint() -%}
    {%- set stamp = lago_cdc.declared_type('timestamptz') -%}
    {%- set merged_at = lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) if status == 'merged'
        else 'cast(null as ' ~ stamp ~ ')' -%}
    select
        {{ lago_cdc.sql_string(this.identifier) }} as model_name,
        {{ lago_cdc.sql_string(source_name) }} as source_name,
        {{ lago_cdc.sql_string(table_name) }} as table_name,
    {%- if reader is none %}
        {#- after the model, source and table names: every other column, typed as declared #}
        {%- for name, type in lago_cdc.state_table_columns()['bronze_processed_files'][3:] %}
        cast(null as {{ type }}) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    where 1 = 0
    {%- else %}
        {{ lago_cdc.lake_file_id_sql('cast(filename as ' ~ dbt.type_string() ~ ')') }} as file_name,
        count(*) as row_count,
        min({{ convention.timestamp }}) as min_cdc_timestamp,
        max({{ convention.timestamp }}) as max_cdc_timestamp,
        min({{ convention.sequence or 'cast(null as ' ~ bigint ~ ')' }}) as min_cdc_sequence,
        max({{ convention.sequence or 'cast(null as ' ~ bigint ~ ')' }}) as max_cdc_sequence,
        {{ lago_cdc.sql_string(status) }} as status,
        {{ merged_at }} as merged_at
    from {{ reader }}
    group by filename
    {%- endif %}
{% endmacro %}


{#-
    The files merged before, read again when the batch is late (a change not newer than the newest change they
    hold: macros/bronze/bronze_cdc.sql), so the history of its keys decides. The model's SQL defines `late_batch`.
-#}
{% macro checkpoint_history_reader(source_name, table_name, batch, convention) %}
    {{ return(adapter.dispatch('checkpoint_history_reader', 'lago_cdc')(source_name, table_name, batch, convention)) }}
{% endmacro %}

{#- Spark, Databricks: the files are named in the SQL, so whether the batch is late is asked first. -#}
{% macro default__checkpoint_history_reader(source_name, table_name, batch, convention) %}
    {%- if batch.reader is none or batch.consumed.count == 0 or not batch.consumed_files
          or not lago_cdc.checkpoint_batch_is_late(batch.reader, convention) -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(lago_cdc.read_lake_files(batch.consumed_files)) }}
{% endmacro %}

{#- DuckDB: decided inside the statement; a batch in time opens none of the files. -#}
{% macro duckdb__checkpoint_history_reader(source_name, table_name, batch, convention) %}
    {{ return(lago_cdc.read_checkpoint_files(
        source_name, table_name, 'merged', batch.consumed_files, batch.listed,
        only_if='exists (select 1 from late_batch)')) }}
{% endmacro %}


{% macro checkpoint_batch_is_late(reader, convention) %}
    {%- set late_sql -%}
        with newest as (
            select max(max_cdc_timestamp) as max_cdc_timestamp
            from {{ lago_cdc.state_table('bronze_processed_files') }}
            where model_name = {{ lago_cdc.sql_string(this.identifier) }} and status = 'merged'
        ),

        newest_sequence as (
            select max(checkpoint.max_cdc_sequence) as max_cdc_sequence
            from {{ lago_cdc.state_table('bronze_processed_files') }} as checkpoint
            inner join newest on checkpoint.max_cdc_timestamp = newest.max_cdc_timestamp
            where checkpoint.model_name = {{ lago_cdc.sql_string(this.identifier) }} and checkpoint.status = 'merged'
        ),

        batch_changes as (
            select
                {{ convention.timestamp }} as cdc_timestamp,
                {{ convention.sequence }} as cdc_sequence
            from {{ reader }}
        )

        select count(*)
        from batch_changes
        cross join newest
        cross join newest_sequence
        where
            batch_changes.cdc_timestamp < newest.max_cdc_timestamp
            or (
                batch_changes.cdc_timestamp = newest.max_cdc_timestamp
                and batch_changes.cdc_sequence <= newest_sequence.max_cdc_sequence
            )
    {%- endset -%}
    {{ return(run_query(late_sql).rows[0][0] > 0) }}
{% endmacro %}


{#- Post-hook: a rebuild read every file, so it forgets the files the model had consumed before. -#}
{% macro checkpoint_forget_on_rebuild() %}
    {%- if not should_full_refresh() -%}
        {{ return('') }}
    {%- endif -%}
    delete from {{ lago_cdc.state_table('bronze_processed_files') }}
    where model_name = {{ lago_cdc.sql_string(this.identifier) }} and status = 'merged'
{% endmacro %}


{#- Post-hook, inside the model's transaction: the planned files are now consumed (checkpoint_write_plan). -#}
{% macro checkpoint_commit_plan() %}
    {#- no new file: the plan is empty (on Spark, committing it would still write a Delta version) -#}
    {%- if lago_cdc.inputs_say_nothing_new() -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(adapter.dispatch('checkpoint_commit_plan', 'lago_cdc')()) }}
{% endmacro %}

{% macro default__checkpoint_commit_plan() %}
    update {{ lago_cdc.state_table('bronze_processed_files') }}
    set status = 'merged', merged_at = {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }}
    where model_name = {{ lago_cdc.sql_string(this.identifier) }} and status = 'planned'
{% endmacro %}

{#- Spark: the view the plan left in the session, written once. -#}
{% macro spark__checkpoint_commit_plan() %}
    {%- set columns = lago_cdc.checkpoint_plan_columns() | join(', ') -%}
    insert into {{ lago_cdc.state_table('bronze_processed_files') }} ({{ columns }})
    select {{ columns }} from {{ lago_cdc.checkpoint_plan_view() }}
{% endmacro %}

{% macro databricks__checkpoint_commit_plan() %}
    {{ return(lago_cdc.default__checkpoint_commit_plan()) }}
{% endmacro %}
