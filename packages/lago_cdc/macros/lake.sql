{#-
    The lake: where the raw change files of a source table live, how each engine lists and reads them, and what
    names a file whatever the spelling of LAKE_URI. Layout (written by `python -m ingestion`):
        <LAKE_URI>/raw/<source>/full-load/<table>/<table>_<yyyymmdd_HHMMSS_ffffff>.parquet
        <LAKE_URI>/raw/<source>/cdc/<table>/<table>_<yyyymmdd_HHMMSS_ffffff>.parquet
        <LAKE_URI>/raw/<source>/events/<table>/<table>_<batch>.parquet
        <LAKE_URI>/_ingestion/lake.json       the lake's identity, written once at its first capture
-#}

{% macro lake_uri() %}
    {{ return(env_var('LAKE_URI', 'lake').rstrip('/')) }}
{% endmacro %}


{#-
    A value as an SQL string literal of the engine. dbt.string_literal quotes without escaping, so a lake path or
    a file name holding a quote would end the literal early (a parser error at best, an injection at worst):
    every lake path, file name and lake-derived value goes through this macro instead. Standard SQL doubles the
    quote; Spark and Databricks read backslash escapes inside literals, so both backslash and quote are escaped.
-#}
{% macro sql_string(value) %}
    {{ return(adapter.dispatch('sql_string', 'lago_cdc')(value)) }}
{% endmacro %}

{% macro default__sql_string(value) %}
    {{ return("'" ~ (value | string | replace("'", "''")) ~ "'") }}
{% endmacro %}

{% macro spark__sql_string(value) %}
    {{ return("'" ~ (value | string | replace('\\', '\\\\') | replace("'", "\\'")) ~ "'") }}
{% endmacro %}


{#- The lake root as the engine's file system names it: Hadoop reads S3 through s3a://, Databricks reads s3://. -#}
{% macro lake_filesystem_uri() %}
    {{ return(adapter.dispatch('lake_filesystem_uri', 'lago_cdc')()) }}
{% endmacro %}

{#- DuckDB resolves a relative path against the directory dbt runs in (the project root in the quick start). -#}
{% macro default__lake_filesystem_uri() %}
    {{ return(lago_cdc.lake_uri()) }}
{% endmacro %}

{#-
    Spark resolves a relative path against different folders depending on the statement: a read against the
    driver's working directory, a catalog table's location (the listing below) against the warehouse folder.
    A relative lake is therefore made absolute here, against the driver's working directory (where dbt runs, as
    on DuckDB), so every statement reads the same folder.
-#}
{% macro spark__lake_filesystem_uri() %}
    {%- set uri = lago_cdc.lake_uri() -%}
    {%- if uri.startswith('s3://') -%}
        {{ return('s3a://' ~ uri[5:]) }}
    {%- elif uri.startswith('/') or modules.re.match('^[A-Za-z][A-Za-z0-9+.-]*:', uri) -%}
        {{ return(uri) }}
    {%- endif -%}
    {%- set cwd = run_query("select reflect('java.lang.System', 'getProperty', 'user.dir')").rows[0][0] -%}
    {{ return(cwd.rstrip('/') ~ '/' ~ (uri[2:] if uri.startswith('./') else uri)) }}
{% endmacro %}

{% macro databricks__lake_filesystem_uri() %}
    {{ return(lago_cdc.lake_uri()) }}
{% endmacro %}


{#-
    A lake file's identity: its path from the lake root (`raw/<source>/<folder>/<table>/<file>`). The checkpoint
    and Bronze's _source_file hold this, so a relative or absolute LAKE_URI, a trailing slash, s3:// or s3a://,
    or a lake moved to another folder name the same files.
-#}
{% macro lake_file_id(path) %}
    {%- set path = '/' ~ path -%}
    {{ return(path[path.rfind('/raw/') + 1:]) }}
{% endmacro %}

{#- The same in SQL, over a column of paths as an engine reports them. -#}
{% macro lake_file_id_sql(column) -%}
    regexp_extract({{ column }}, '(raw/[^/]+/[^/]+/[^/]+/[^/]+)$', 1)
{%- endmacro %}


{#-
    Every file of a table in the given folders (`full-load`, `cdc` or `events`), sorted by name (= capture time).
    A folder that does not exist holds no file. Every file of the folder counts, whatever its name: a name that is
    not a lake file's (`<table>_<yyyymmdd_HHMMSS_ffffff>.parquet`, the ingestion's only spelling, events batches
    included) is refused by name, never skipped nor put into SQL. Hidden files (`.` or `_` first, which Spark's
    readers skip) are not the lake's and are left out on every engine.
-#}
{% macro list_lake_files(source_name, table_name, folders=['full-load', 'cdc']) %}
    {%- set listed = adapter.dispatch('list_lake_folder_files', 'lago_cdc')(source_name, table_name, folders) -%}
    {%- set valid = '^' ~ modules.re.escape(table_name) ~ '_[0-9]{8}_[0-9]{6}_[0-9]{6}[.]parquet$' -%}
    {%- set files = [] -%}
    {%- for path in listed -%}
        {%- set name = path.split('/')[-1] -%}
        {%- if not (name.startswith('.') or name.startswith('_')) -%}
            {%- if not modules.re.match(valid, name) -%}
                {{ exceptions.raise_compiler_error(
                    source_name ~ "." ~ table_name ~ ": lake file " ~ lago_cdc.lake_file_id(path) ~ " (in "
                    ~ lago_cdc.lake_filesystem_uri() ~ ") is not named like a file of the table ("
                    ~ table_name ~ "_<yyyymmdd_HHMMSS_ffffff>.parquet): it was not written by the ingestion."
                    ~ " Move it out of the table's folder. Nothing was changed.") }}
            {%- endif -%}
            {%- do files.append(path) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(files | sort) }}
{% endmacro %}

{% macro duckdb__list_lake_folder_files(source_name, table_name, folders) %}
    {%- set globs = [] -%}
    {%- for folder in folders -%}
        {%- set pattern = lago_cdc.lake_filesystem_uri() ~ '/raw/' ~ source_name ~ '/' ~ folder ~ '/' ~ table_name
            ~ '/*' -%}
        {%- do globs.append("select file from glob(" ~ lago_cdc.sql_string(pattern) ~ ")") -%}
    {%- endfor -%}
    {{ return(run_query(globs | join(' union all ')).columns[0].values() | list) }}
{% endmacro %}

{#-
    Spark: the lake's `raw/` folder, listed once per model, keeps the table's files by their path. A source with no
    file yet, or a lake with no `raw/` at all, is an empty list (macros below).
-#}
{% macro spark__list_lake_folder_files(source_name, table_name, folders) %}
    {%- set escaped = [] -%}
    {%- for folder in folders -%}
        {%- do escaped.append(modules.re.escape(folder)) -%}
    {%- endfor -%}
    {%- set pattern = '/raw/' ~ modules.re.escape(source_name) ~ '/(' ~ escaped | join('|') ~ ')/'
        ~ modules.re.escape(table_name) ~ '/[^/]+$' -%}
    {{ return(lago_cdc.files_under(lago_cdc.lake_filesystem_uri() ~ '/raw', '*', pattern)) }}
{% endmacro %}


{#-
    The files the lake's capture log says were published for a table in the given folders, by identity
    (`raw/<source>/<folder>/<table>/<file>`), or none when the table has no capture log (a lake written before
    the ingestion kept one, or files put there by hand). The log is `_ingestion/<source>/<table>/state.json`,
    one record per committed capture (`captures[].data_key`, none for a capture without changes), events
    batches included. A capture held by the circuit breaker, or decided but not yet committed, is not in it:
    not published, not expected.
-#}
{% macro lake_published_files(source_name, table_name, folders) %}
    {%- set key = '_ingestion/' ~ source_name ~ '/' ~ table_name ~ '/state.json' -%}
    {%- set text = lago_cdc.read_lake_text(key) -%}
    {%- if text is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set state = fromjson(text) -%}
    {%- if state is not mapping or state.get('captures') is none -%}
        {{ exceptions.raise_compiler_error(
            source_name ~ "." ~ table_name ~ ": the lake's capture log " ~ lago_cdc.lake_filesystem_uri() ~ "/"
            ~ key ~ " is not a capture log (unreadable JSON, or no `captures`). Restore it from a backup of the"
            ~ " lake. Nothing was changed.") }}
    {%- endif -%}
    {%- set published = [] -%}
    {%- for capture in state.captures if capture.get('data_key') -%}
        {%- if capture.data_key.split('/')[2] in folders -%}
            {%- do published.append(capture.data_key) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(published) }}
{% endmacro %}


{#-
    on-run-start of a --full-refresh: every lake table read by a selected model must still have every file its
    capture log lists as published. The models check it too (macros/bronze/checkpoint.sql), but one at a time:
    refusing here, before any model runs, keeps the models that do not read the table (Silver, Gold) from being
    rebuilt on their own, so a refused rebuild changes nothing at all.
-#}
{% macro check_published_files() %}
    {%- if not execute or flags.WHICH not in ['run', 'build'] or not flags.FULL_REFRESH
          or var('allow_missing_files', false) or var('allow_truncate', false) -%}
        {{ return('') }}
    {%- endif -%}
    {%- set folders = ['full-load', 'cdc', 'events'] -%}
    {%- set tables = [] -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.unique_id in selected_resources -%}
        {%- for source_id in node.depends_on.nodes if source_id in graph.sources -%}
            {%- set source = graph.sources[source_id] -%}
            {%- if [source.source_name, source.name] not in tables -%}
                {%- do tables.append([source.source_name, source.name]) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set refused = [] -%}
    {%- for source_name, table_name in tables | sort -%}
        {%- set published = lago_cdc.lake_published_files(source_name, table_name, folders) -%}
        {%- if published -%}
            {%- set listed = [] -%}
            {%- for file in lago_cdc.list_lake_files(source_name, table_name, folders) -%}
                {%- do listed.append(lago_cdc.lake_file_id(file)) -%}
            {%- endfor -%}
            {%- set missing = [] -%}
            {%- for key in published if key not in listed -%}
                {%- do missing.append(key) -%}
            {%- endfor -%}
            {%- if missing -%}
                {%- do refused.append(source_name ~ "." ~ table_name ~ ": " ~ missing | length ~ " of "
                    ~ published | length ~ " published files missing (" ~ missing[:5] | join(', ')
                    ~ (" and " ~ (missing | length - 5) ~ " more" if missing | length > 5 else "") ~ ")") -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if refused -%}
        {{ exceptions.raise_compiler_error(
            "--full-refresh needs every file the lake's capture log lists as published, but lake "
            ~ lago_cdc.lake_uri() ~ " (looked in " ~ lago_cdc.lake_filesystem_uri() ~ "/raw) misses some: "
            ~ refused | join('; ') ~ ". Rebuilding without them would lose their changes. Check LAKE_URI, or restore"
            ~ " the files from a backup of the lake; to rebuild without them on purpose, add"
            ~ " --vars '{allow_missing_files: true}'. Nothing was changed.") }}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}


{#- The text of the lake file at `key` (a path from the lake root), or none when there is no such file. -#}
{% macro read_lake_text(key) %}
    {{ return(adapter.dispatch('read_lake_text', 'lago_cdc')(key)) }}
{% endmacro %}

{% macro duckdb__read_lake_text(key) %}
    {%- set path = lago_cdc.sql_string(lago_cdc.lake_filesystem_uri() ~ '/' ~ key) -%}
    {%- if not run_query('select file from glob(' ~ path ~ ')').rows -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(run_query('select content from read_text(' ~ path ~ ')').rows[0][0]) }}
{% endmacro %}

{#-
    Spark: the file is looked for by listing it (a listing's location may be one file), so a missing one gives
    none instead of Spark's PATH_NOT_FOUND; the text reader's wholetext reads it as one row.
-#}
{% macro spark__read_lake_text(key) %}
    {%- set name = key.split('/')[-1] -%}
    {%- set found = lago_cdc.files_under(
        lago_cdc.lake_filesystem_uri() ~ '/' ~ key, name, '/' ~ modules.re.escape(name) ~ '$') -%}
    {%- if not found -%}
        {{ return(none) }}
    {%- endif -%}
    {%- call statement('lago_mago_lake_text') -%}
        create or replace temporary view lago_mago_lake_text
        using text
        options (path {{ lago_cdc.sql_string(found[0]) }}, wholetext 'true')
    {%- endcall -%}
    {{ return(run_query('select value from lago_mago_lake_text').rows[0][0]) }}
{% endmacro %}


{#-
    Spark SQL cannot list a folder, and reading a path that does not exist fails (PATH_NOT_FOUND). The binaryFile
    source lists files without reading them (only `path` is selected); declared as a catalog table over the
    folder, a missing location is an empty listing instead of an error (Spark checks paths for reads, not for
    tables). The table lives only for the listing: created, read, dropped (the files stay).
-#}
{% macro files_under(folder, name_glob, pattern) %}
    {{ return(adapter.dispatch('files_under', 'lago_cdc')(folder, name_glob, pattern)) }}
{% endmacro %}

{#- DuckDB lists with glob() in its own variants above, and never calls this. -#}
{% macro default__files_under(folder, name_glob, pattern) %}
    {{ exceptions.raise_compiler_error("files_under has no implementation for " ~ target.type) }}
{% endmacro %}

{% macro spark__files_under(folder, name_glob, pattern) %}
    {%- set schema = generate_schema_name('bronze', none) | trim -%}
    {%- set listing = schema ~ '.lago_mago_listing_' ~ local_md5(folder ~ '|' ~ name_glob ~ '|' ~ pattern)[:16] -%}
    {%- do run_query('create schema if not exists ' ~ schema) -%}
    {%- do run_query('drop table if exists ' ~ listing) -%}
    {%- call statement('lago_mago_listing') -%}
        create table {{ listing }}
        using binaryFile
        options (recursiveFileLookup 'true', pathGlobFilter {{ lago_cdc.sql_string(name_glob) }})
        location {{ lago_cdc.sql_string(folder) }}
    {%- endcall -%}
    {%- set paths = run_query(
        'select path from ' ~ listing ~ ' where path rlike ' ~ lago_cdc.sql_string(pattern)).columns[0].values() | list -%}
    {%- do run_query('drop table if exists ' ~ listing) -%}
    {{ return(paths) }}
{% endmacro %}

{#-
    Databricks: Unity Catalog admits an external table only under an external location, so a temporary view lists
    the folder; a folder that does not exist fails there with PATH_NOT_FOUND naming it.
-#}
{% macro databricks__files_under(folder, name_glob, pattern) %}
    {%- set view = 'lago_mago_listing_' ~ local_md5(folder ~ '|' ~ name_glob ~ '|' ~ pattern)[:16] -%}
    {%- call statement('lago_mago_listing') -%}
        create or replace temporary view {{ view }}
        using binaryFile
        options (
            path {{ lago_cdc.sql_string(folder) }},
            recursiveFileLookup 'true',
            pathGlobFilter {{ lago_cdc.sql_string(name_glob) }}
        )
    {%- endcall -%}
    {{ return(run_query(
        'select path from ' ~ view ~ ' where path rlike ' ~ lago_cdc.sql_string(pattern)).columns[0].values() | list) }}
{% endmacro %}


{#-
    A relation reading exactly the given files, with `filename` (the path as listed) and `file_row_number` (the
    row's position in its file, which orders the changes of a file that has no sequence column).
-#}
{% macro read_lake_files(files) %}
    {{ return(adapter.dispatch('read_lake_files', 'lago_cdc')(files)) }}
{% endmacro %}

{% macro duckdb__read_lake_files(files) %}
    {%- set literals = [] -%}
    {%- for file in files -%}
        {%- do literals.append(lago_cdc.sql_string(file)) -%}
    {%- endfor -%}
    read_parquet([{{ literals | join(', ') }}], filename = true, file_row_number = true, union_by_name = true)
{%- endmacro %}

{#-
    One path with a Hadoop glob `<common folder>/{<file>,<file>,...}` names every file;
    spark.sql.parquet.mergeSchema (profiles.yml) unions files written before and after a column was added.
-#}
{% macro spark__read_lake_files(files) %}
    {%- set first = files[0].split('/') -%}
    {%- set common = namespace(depth=(first | length) - 1) -%}
    {%- for file in files[1:] -%}
        {%- set parts = file.split('/') -%}
        {%- set shared = namespace(depth=0) -%}
        {%- for index in range([common.depth, (parts | length) - 1] | min) -%}
            {%- if shared.depth == index and parts[index] == first[index] -%}
                {%- set shared.depth = index + 1 -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set common.depth = shared.depth -%}
    {%- endfor -%}
    {%- set folder = first[:common.depth] | join('/') -%}
    {%- set names = [] -%}
    {%- for file in files -%}
        {%- set escaped = namespace(name=file.split('/')[common.depth:] | join('/')) -%}
        {%- for special in ['\\', '{', '}', ',', '[', ']', '*', '?'] -%}
            {%- set escaped.name = escaped.name | replace(special, '\\' ~ special) -%}
        {%- endfor -%}
        {%- do names.append(escaped.name) -%}
    {%- endfor -%}
    {%- set glob = folder ~ '/' ~ (names[0] if names | length == 1 else '{' ~ names | join(',') ~ '}') -%}
    (
        select
            *,
            _metadata.file_path as filename,
            _metadata.row_index as file_row_number
        from parquet.`{{ glob | replace('`', '``') }}`
    )
{%- endmacro %}


{#-
    The table's lake files that the checkpoint holds for this model with the given status ('planned': this run's
    batch, 'merged': what earlier runs merged), read together with `filename` and `file_row_number`; none when the
    lake holds no file of the table (`listed`, every file of it). `files` are those same files by path, as
    checkpoint_plan_batch found them; `only_if`, an SQL condition, reads them only when it holds.
-#}
{% macro read_checkpoint_files(source_name, table_name, status, files, listed, only_if=none) %}
    {{ return(adapter.dispatch('read_checkpoint_files', 'lago_cdc')(
        source_name, table_name, status, files, listed, only_if)) }}
{% endmacro %}

{#-
    Spark, Databricks: the files by name (one path glob, what Spark lists and reads); table_changes() takes
    literal versions only, so there the plan is in the SQL Spark compiles.
-#}
{% macro default__read_checkpoint_files(source_name, table_name, status, files, listed, only_if) %}
    {{ return(lago_cdc.read_lake_files(files) if files else none) }}
{% endmacro %}

{#-
    DuckDB: the plan is resolved inside the statement, so the compiled SQL reads the same on any lake. The pattern
    names every file of the table; the semi join on `filename` with the checkpoint's rows (as glob() spells the
    same paths) makes DuckDB open only those files, and none when the plan is empty (an expression on `filename`
    would not prune). DuckDB refuses a pattern that matches no file, so a table without any file in the lake
    reads none.
-#}
{% macro duckdb__read_checkpoint_files(source_name, table_name, status, files, listed, only_if) %}
    {%- if not listed -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set pattern = lago_cdc.sql_string(
        lago_cdc.lake_filesystem_uri() ~ '/raw/' ~ source_name ~ '/*/' ~ table_name ~ '/*.parquet') -%}
    {%- set reader -%}
        (
            select *
            from read_parquet({{ pattern }}, filename = true, file_row_number = true, union_by_name = true)
            where filename in (
                select lake_file.file
                from glob({{ pattern }}) as lake_file
                inner join {{ lago_cdc.state_table('bronze_processed_files') }} as checkpoint
                    on {{ lago_cdc.lake_file_id_sql('lake_file.file') }} = checkpoint.file_name
                where
                    checkpoint.model_name = {{ lago_cdc.sql_string(this.identifier) }}
                    and checkpoint.status = {{ lago_cdc.sql_string(status) }}
                    {%- if only_if %}
                    and {{ only_if }}
                    {%- endif %}
            )
        )
    {%- endset -%}
    {{ return(reader) }}
{% endmacro %}


{#-
    Lake files read together, with every declared column: a column declared after the files were written is in
    none of them. Returns the relation and the lower-cased names of the columns it holds, or none for all of them.
-#}
{% macro with_declared_columns(relation, columns) %}
    {{ return(adapter.dispatch('with_declared_columns', 'lago_cdc')(relation, columns)) }}
{% endmacro %}

{% macro default__with_declared_columns(relation, columns) %}
    {{ return([relation, lago_cdc.relation_column_names(relation)]) }}
{% endmacro %}

{#- DuckDB: a union by name with an empty row of every declared column, so the SQL does not depend on the files -#}
{% macro duckdb__with_declared_columns(relation, columns) %}
    {%- set nulls = [] -%}
    {%- for column in columns -%}
        {%- do nulls.append('null as ' ~ adapter.quote(column.name)) -%}
    {%- endfor -%}
    {{ return([
        '(select ' ~ nulls | join(', ') ~ ' where 1 = 0 union all by name select * from ' ~ relation ~ ')',
        none]) }}
{% endmacro %}


{#- The lower-cased column names of a relation (e.g. lake files read together), from a query that reads no row. -#}
{% macro relation_column_names(relation) %}
    {%- set found = run_query('select * from ' ~ relation ~ ' where 1 = 0') -%}
    {{ return(found.column_names | map('lower') | list) }}
{% endmacro %}


{#- A LAKE_URI pointed at another lake would merge its files into this warehouse's tables: refused up front. -#}
{% macro check_lake_identity() %}
    {%- if not execute or flags.WHICH not in ['run', 'build'] -%}
        {{ return('') }}
    {%- endif -%}
    {%- set recorded_relation = api.Relation.create(
        database=target.get('database'), schema=generate_schema_name('bronze', none) | trim, identifier='lake_identity') -%}
    {%- do adapter.dispatch('create_lake_identity_table', 'lago_cdc')(recorded_relation) -%}
    {%- set recorded = run_query('select lake_id, lake_uri from ' ~ recorded_relation).rows -%}
    {%- set lake_id = lago_cdc.read_lake_id() -%}
    {%- set uri = lago_cdc.lake_uri() -%}
    {%- if recorded and lake_id != recorded[0][0] -%}
        {%- if flags.FULL_REFRESH and var('switch_lake', false) and lake_id is not none -%}
            {%- do run_query('delete from ' ~ recorded_relation) -%}
            {%- set recorded = [] -%}
        {%- elif lake_id is none -%}
            {{ exceptions.raise_compiler_error(
                "LAKE_URI=" ~ uri ~ " is not a lake (no _ingestion/lake.json there), but this warehouse was built"
                ~ " from lake " ~ recorded[0][0] ~ " at " ~ recorded[0][1] ~ ". Check LAKE_URI. Nothing was changed.") }}
        {%- else -%}
            {{ exceptions.raise_compiler_error(
                "LAKE_URI=" ~ uri ~ " is lake " ~ lake_id ~ ", but this warehouse was built from lake "
                ~ recorded[0][0] ~ " at " ~ recorded[0][1] ~ ": one warehouse belongs to one lake. Point LAKE_URI"
                ~ " at that lake or DUCKDB_PATH at another warehouse; to move this one, rebuild it with"
                ~ " --full-refresh --vars '{switch_lake: true}'. Nothing was changed.") }}
        {%- endif -%}
    {%- endif -%}
    {%- if not recorded and lake_id is not none -%}
        {%- do run_query(
            "insert into " ~ recorded_relation ~ " (lake_id, lake_uri, recorded_at) values ("
            ~ lago_cdc.sql_string(lake_id) ~ ", " ~ lago_cdc.sql_string(uri) ~ ", "
            ~ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) ~ ")") -%}
        {%- do adapter.commit() if target.type == 'duckdb' -%}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}

{% macro default__create_lake_identity_table(relation) %}
    {%- do run_query('create schema if not exists ' ~ relation.without_identifier()) -%}
    {%- do run_query(
        'create table if not exists ' ~ relation ~ ' (lake_id ' ~ dbt.type_string() ~ ', lake_uri '
        ~ dbt.type_string() ~ ', recorded_at ' ~ lago_cdc.declared_type('timestamptz') ~ ')') -%}
{% endmacro %}

{% macro spark__create_lake_identity_table(relation) %}
    {%- do run_query('create schema if not exists ' ~ relation.schema) -%}
    {%- do run_query(
        'create table if not exists ' ~ relation ~ ' (lake_id string, lake_uri string, recorded_at timestamp)'
        ~ ' using delta') -%}
{% endmacro %}


{#- The lake's id from <lake>/_ingestion/lake.json, or none when the file is not there. -#}
{% macro read_lake_id() %}
    {%- set text = lago_cdc.read_lake_text('_ingestion/lake.json') -%}
    {%- set identity = fromjson(text) if text is not none else none -%}
    {{ return(identity.get('lake_id') if identity is mapping else none) }}
{% endmacro %}


{#-
    on-run-start (DuckDB): the view `bronze.lake_capture_times` (source, table, capture time) over the lake's file
    names, pointed at this run's LAKE_URI. The sources YAML reads it for `dbt source freshness`, so no lake path is
    rendered at parse time. Other engines read sources from their catalog and skip it.
-#}
{% macro publish_lake_capture_times() %}
    {{ return(adapter.dispatch('publish_lake_capture_times', 'lago_cdc')()) }}
{% endmacro %}

{% macro default__publish_lake_capture_times() %}
    {{ return('') }}
{% endmacro %}

{% macro duckdb__publish_lake_capture_times() %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set files = lago_cdc.lake_filesystem_uri() ~ '/raw/*/*/*/*.parquet' -%}
    {%- do run_query('create schema if not exists ' ~ (generate_schema_name('bronze', none) | trim)) -%}
    {%- call statement('lago_mago_lake_capture_times') -%}
        create or replace view {{ generate_schema_name('bronze', none) | trim }}.lake_capture_times as
        select
            regexp_extract(file, '/raw/([^/]+)/[^/]+/[^/]+/[^/]+$', 1) as source_name,
            regexp_extract(file, '/raw/[^/]+/[^/]+/([^/]+)/[^/]+$', 1) as table_name,
            try_strptime(regexp_extract(file, '_(\d+_\d+_\d+)[.]parquet$', 1), '%Y%m%d_%H%M%S_%f') as captured_at
        from glob({{ lago_cdc.sql_string(files) }})
    {%- endcall -%}
    {%- do adapter.commit() -%}
    {{ return('') }}
{% endmacro %}


{#-
    Consistent cuts. A database capture records in its capture log the cut of the source it was read in
    (`captures[].cut`: a Postgres snapshot, the same for every table of a run), and a log mode capture the
    write-ahead log position its table holds every change up to (`log_position`); a file source records neither.
    Two tables whose states in the warehouse come from one cut are one state of the source: an orphan between them
    is in the source itself, or the pipeline broke (tests/dbt/generic/enforced_relationships.sql).
-#}

{#- The cut a capture record names, or none. -#}
{% macro capture_cut(capture) %}
    {%- if capture.get('cut') -%}
        {{ return(capture.cut) }}
    {%- elif capture.get('log_position') -%}
        {{ return('log:' ~ capture.log_position) }}
    {%- endif -%}
    {{ return(none) }}
{% endmacro %}


{#- A table's capture records, oldest first (`captures` of its capture log), or [] when it has no capture log. -#}
{% macro lake_captures(source_name, table_name) %}
    {%- set text = lago_cdc.read_lake_text('_ingestion/' ~ source_name ~ '/' ~ table_name ~ '/state.json') -%}
    {%- set state = fromjson(text) if text is not none else none -%}
    {{ return(state.captures if state is mapping and state.get('captures') is iterable else []) }}
{% endmacro %}


{#-
    The cuts a lake table's state equals once a model has consumed the given files (ids `raw/...`) of its captures:
    the cut of the last capture whose file it consumed, and of each later capture that published nothing (the
    table was the same in that cut). No cut (an empty list) when the state cannot be placed: a consumed file the
    log does not list (a capture not committed yet), or a file of the log skipped before a consumed one.
-#}
{% macro lake_table_cuts(captures, consumed_ids) %}
    {%- set listed = [] -%}
    {%- set found = namespace(last=none, skipped=false, placed=true) -%}
    {%- for capture in captures if capture.get('data_key') -%}
        {%- do listed.append(capture.data_key) -%}
    {%- endfor -%}
    {%- for capture in captures -%}
        {%- if capture.get('data_key') and capture.data_key in consumed_ids -%}
            {%- set found.placed = found.placed and not found.skipped -%}
            {%- set found.last = loop.index0 -%}
        {%- elif capture.get('data_key') -%}
            {%- set found.skipped = true -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for consumed in consumed_ids if consumed not in listed -%}
        {%- set found.placed = false -%}
    {%- endfor -%}
    {%- if found.last is none or not found.placed -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set cuts = [] -%}
    {%- set reach = namespace(open=true) -%}
    {%- for capture in captures[found.last:] -%}
        {%- set reach.open = reach.open and (loop.first or not capture.get('data_key')) -%}
        {%- set cut = lago_cdc.capture_cut(capture) if reach.open else none -%}
        {%- if cut and cut not in cuts -%}
            {%- do cuts.append(cut) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(cuts) }}
{% endmacro %}


{#-
    The cuts of every lake table a model's current state derives from, one list per table, or none when it cannot
    be placed. A model that reads the lake consumed the files its checkpoint rows name (bronze_processed_files); a
    model that applies producers' change feeds (Silver) has their states only when it has read each feed to its
    latest version (change_feed_positions), else it lags. The caller refers to those models at parse time.
-#}
{% macro model_lake_cuts(node) %}
    {%- set lists = [] -%}
    {%- set placed = namespace(ok=true, any=false) -%}
    {%- for parent in node.depends_on.nodes -%}
        {%- if parent in graph.sources -%}
            {%- set source = graph.sources[parent] -%}
            {%- set captures = lago_cdc.lake_captures(source.source_name, source.name) -%}
            {%- set consumed = [] -%}
            {%- set named = namespace(any=false) -%}
            {%- for capture in captures if lago_cdc.capture_cut(capture) -%}
                {%- set named.any = true -%}
            {%- endfor -%}
            {#- a table whose log names no cut (a file source) has none: its checkpoint is not read -#}
            {%- if named.any -%}
                {%- set consumed_sql -%}
                    select file_name from {{ lago_cdc.state_table('bronze_processed_files') }}
                    where model_name = {{ lago_cdc.sql_string(node.alias) }} and status = 'merged'
                        and source_name = {{ lago_cdc.sql_string(source.source_name) }}
                        and table_name = {{ lago_cdc.sql_string(source.name) }}
                {%- endset -%}
                {%- set consumed = run_query(consumed_sql).columns[0].values() | list -%}
            {%- endif -%}
            {%- do lists.append(lago_cdc.lake_table_cuts(captures, consumed)) -%}
            {%- set placed.any = true -%}
        {%- elif parent in graph.nodes and graph.nodes[parent].config.get('incremental_strategy') == 'cdc_merge' -%}
            {%- set producer = graph.nodes[parent] -%}
            {%- set below = lago_cdc.model_lake_cuts(producer) -%}
            {%- if below is none or [] in below -%}
                {#- nothing to place this model in: its position in the producer's feed does not matter -#}
                {%- set placed.ok = false -%}
            {%- else -%}
                {%- set position_sql -%}
                    select max(commit_version) from {{ lago_cdc.state_table('change_feed_positions') }}
                    where consumer_name = {{ lago_cdc.sql_string(node.alias) }}
                        and producer_name = {{ lago_cdc.sql_string(producer.alias) }}
                {%- endset -%}
                {%- set position = run_query(position_sql).rows[0][0] -%}
                {%- if position is none
                    or position | int != lago_cdc.feed_version(lago_cdc.node_relation(producer)) -%}
                    {%- set placed.ok = false -%}
                {%- else -%}
                    {%- do lists.extend(below) -%}
                    {%- set placed.any = true -%}
                {%- endif -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(lists if placed.ok and placed.any else none) }}
{% endmacro %}


{#- The cut every lake table under the given models shares in the warehouse now (the latest such), or none. -#}
{% macro shared_lake_cut(nodes) %}
    {%- set lists = [] -%}
    {%- for node in nodes -%}
        {%- set cuts = lago_cdc.model_lake_cuts(node) -%}
        {#- a side that cannot be placed, or a table without a cut (a file source): no need to read further -#}
        {%- if cuts is none or [] in cuts -%}
            {{ return(none) }}
        {%- endif -%}
        {%- do lists.extend(cuts) -%}
    {%- endfor -%}
    {%- set shared = namespace(cuts=lists[0] if lists else []) -%}
    {%- for cuts in lists[1:] -%}
        {%- set shared.cuts = shared.cuts | select('in', cuts) | list -%}
    {%- endfor -%}
    {{ return(shared.cuts[-1] if shared.cuts else none) }}
{% endmacro %}
