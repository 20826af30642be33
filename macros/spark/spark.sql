{#-
    Spark with Delta Lake (`spark` target) and Databricks (`databricks` target): the engines' side of the
    dispatched macros. dbt-databricks looks for databricks__ first, then spark__, so a spark__ macro serves both
    unless a databricks__ one says otherwise.
-#}


{#- The lake root as the engine's file system names it: Hadoop reads S3 through s3a://, Databricks reads s3://. -#}
{% macro lake_filesystem_uri() %}
    {{ return(adapter.dispatch('lake_filesystem_uri', 'lago_mago')()) }}
{% endmacro %}

{% macro default__lake_filesystem_uri() %}
    {{ return(lago_mago.lake_uri()) }}
{% endmacro %}

{% macro spark__lake_filesystem_uri() %}
    {%- set uri = lago_mago.lake_uri() -%}
    {{ return('s3a://' ~ uri[5:] if uri.startswith('s3://') else uri) }}
{% endmacro %}

{% macro databricks__lake_filesystem_uri() %}
    {{ return(lago_mago.lake_uri()) }}
{% endmacro %}


{#-
    The parquet files `<lake>/raw/<source>/<folder>/<table>/<table>_*.parquet` for the given folders, sorted.
    Spark SQL cannot list a folder, but the binaryFile source lists files without reading them (only the `path`
    column is selected). Listing under the source's folder returns nothing rather than failing when a table has
    no file yet; the source's folder itself must exist (ingestion creates it at its first capture).
-#}
{% macro spark_list_lake_files(source_name, folders, table_name) %}
    {%- set root = lago_mago.lake_filesystem_uri() ~ '/raw/' ~ source_name -%}
    {#- a temporary view per table: models running on parallel threads share one Spark session -#}
    {%- set view = 'lago_mago_files__' ~ source_name ~ '__' ~ table_name -%}
    {%- call statement('list_' ~ view) -%}
        create or replace temporary view {{ view }}
        using binaryFile
        options (
            path {{ dbt.string_literal(root) }},
            recursiveFileLookup 'true',
            pathGlobFilter {{ dbt.string_literal(table_name ~ '_*.parquet') }}
        )
    {%- endcall -%}
    {%- set pattern = '/raw/' ~ source_name ~ '/(' ~ folders | join('|') ~ ')/' ~ table_name ~ '/'
        ~ table_name ~ '_[^/]*[.]parquet$' -%}
    {%- set listing -%}
        select path from {{ view }} where path rlike {{ dbt.string_literal(pattern) }}
    {%- endset -%}
    {{ return(run_query(listing).columns[0].values() | list | sort) }}
{% endmacro %}

{% macro spark__list_lake_files(source_name, table_name) %}
    {{ return(lago_mago.spark_list_lake_files(source_name, ['full-load', 'cdc'], table_name)) }}
{% endmacro %}

{% macro spark__list_event_files(source_name, table_name) %}
    {{ return(lago_mago.spark_list_lake_files(source_name, ['events'], table_name)) }}
{% endmacro %}


{#-
    A relation reading exactly the given files, with a `filename` column naming each row's file (the same string
    the listing returned). One path with a Hadoop glob `<common folder>/{<file>,<file>,...}` names them all;
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
    (select *, _metadata.file_path as filename from parquet.`{{ glob }}`)
{%- endmacro %}


{#- Spark's `timestamp` is a point in time (TIMESTAMP_LTZ), shown in the session time zone (UTC, profiles.yml). -#}
{% macro spark__cast_to_timestamp_tz(expression) -%}
    cast({{ expression }} as timestamp)
{%- endmacro %}

{% macro spark__epoch_ms_to_timestamp(expression) -%}
    timestamp_millis(cast({{ expression }} as bigint))
{%- endmacro %}

{% macro spark__days_between(start_date, end_date) -%}
    datediff({{ end_date }}, {{ start_date }})
{%- endmacro %}


{#-
    Incremental strategies. dbt-spark accepts only its built-in ones (append, merge, insert_overwrite,
    microbatch); these two overrides of its own macros let the project's strategies through on Delta tables:
    `cdc_merge` (macros/bronze/cdc_merge.sql, a single MERGE here) and `delete+insert`, which on Delta is one
    MERGE on the unique key (a Spark statement cannot hold a DELETE and an INSERT). dbt-databricks knows custom
    strategies and delete+insert itself and does not call these.
-#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {%- if raw_strategy in ['append', 'merge', 'insert_overwrite', 'microbatch'] -%}
        {{ return(dbt.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) }}
    {%- endif -%}
    {%- if file_format != 'delta' -%}
        {{ exceptions.raise_compiler_error(
            "incremental strategy " ~ raw_strategy ~ " needs file_format 'delta' (found " ~ file_format ~ ")") }}
    {%- endif -%}
    {%- if raw_strategy != 'delete+insert' and context.get('get_incremental_' ~ raw_strategy ~ '_sql') is none -%}
        {{ exceptions.raise_compiler_error(
            "incremental strategy " ~ raw_strategy ~ ": no macro get_incremental_" ~ raw_strategy ~ "_sql") }}
    {%- endif -%}
    {{ return(raw_strategy) }}
{% endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy in ['append', 'merge', 'insert_overwrite', 'microbatch'] -%}
        {{ return(dbt.dbt_spark_get_incremental_sql(
            strategy, source, target, existing, unique_key, incremental_predicates)) }}
    {%- elif strategy == 'delete+insert' -%}
        {{ return(get_merge_sql(target, source, unique_key, dest_columns=none, incremental_predicates=incremental_predicates)) }}
    {%- endif -%}
    {{ return(context['get_incremental_' ~ strategy ~ '_sql']({
        'target_relation': target,
        'temp_relation': source,
        'unique_key': unique_key,
        'dest_columns': adapter.get_columns_in_relation(target),
        'incremental_predicates': incremental_predicates,
    })) }}
{% endmacro %}


{#-
    Declared column types (sources YAML `data_type`, written in DuckDB's words) as Spark types: Spark has no
    unbounded `varchar`, and its `timestamp` is already a point in time.
-#}
{% macro spark__declared_type(data_type) %}
    {%- set spark_types = {
        'varchar': 'string',
        'text': 'string',
        'timestamptz': 'timestamp',
        'timestamp with time zone': 'timestamp',
    } -%}
    {{ return(spark_types.get(data_type | trim | lower, data_type)) }}
{% endmacro %}


{#-
    Silver's delete propagation on Delta: DELETE takes no subquery there, MERGE's `not matched by source` does
    the same anti-join in one statement (rows with a NULL key stay, as with `not in`).
-#}
{% macro spark__delete_rows_missing_upstream(upstream, key, upstream_key) %}
    merge into {{ this }} as target
    using (
        select distinct {{ upstream_key }} as upstream_key
        from {{ upstream }} as upstream
        where {{ upstream_key }} is not null
    ) as upstream
        on target.{{ key }} = upstream.upstream_key
    when not matched by source and target.{{ key }} is not null then delete
{% endmacro %}



{#-
    dbt's snapshot helpers (hard_deletes: new_record) read column names from the `get_columns_in_relation` macro;
    dbt-spark's returns the raw `describe` rows, so every column of a deletion record came out NULL. Return
    dbt-spark's columns instead. dbt-databricks reads those raw rows on purpose: keep them there.
-#}
{% macro spark__get_columns_in_relation(relation) %}
    {{ return(adapter.get_columns_in_relation(relation)) }}
{% endmacro %}

{% macro databricks__get_columns_in_relation(relation) %}
    {{ return(dbt.spark__get_columns_in_relation(relation)) }}
{% endmacro %}
