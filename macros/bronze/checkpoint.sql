{#-
    The checkpoint of Bronze: which lake files each bronze model has merged (model bronze_processed_files).
-#}

{#- The files already merged into a bronze model, and the newest change among them. -#}
{% macro bronze_merged_files(model_relation) %}
    {%- set checkpoint = ref('bronze_processed_files') -%}
    {%- if load_relation(checkpoint) is none -%}
        {{ return({'files': [], 'max_cdc_timestamp': none, 'max_cdc_sequence': none}) }}
    {%- endif -%}
    {%- set model_name = dbt.string_literal(model_relation.identifier) -%}
    {%- set files_sql -%}
        select file_name from {{ checkpoint }} where model_name = {{ model_name }} order by file_name
    {%- endset -%}
    {%- set newest_sql -%}
        select max(max_cdc_timestamp), max(max_cdc_sequence) from {{ checkpoint }} where model_name = {{ model_name }}
    {%- endset -%}
    {%- set newest = run_query(newest_sql).rows[0] -%}
    {{ return({
        'files': run_query(files_sql).columns[0].values() | list,
        'max_cdc_timestamp': newest[0],
        'max_cdc_sequence': newest[1],
    }) }}
{% endmacro %}


{#- True when a new file holds a change not newer than the newest change already merged (late or replayed). -#}
{% macro bronze_batch_is_late(batch_reader, convention, merged) %}
    {%- set checkpoint = ref('bronze_processed_files') -%}
    {%- set model_name = dbt.string_literal(this.identifier) -%}
    {%- set late_sql -%}
        with newest as (
            select max(max_cdc_timestamp) as max_cdc_timestamp, max(max_cdc_sequence) as max_cdc_sequence
            from {{ checkpoint }}
            where model_name = {{ model_name }}
        ),

        batch_changes as (
            select
                {{ convention.timestamp }} as cdc_timestamp,
                {{ convention.sequence }} as cdc_sequence
            from {{ batch_reader }}
        )

        select count(*)
        from batch_changes
        cross join newest
        where
            batch_changes.cdc_timestamp < newest.max_cdc_timestamp
            or (
                batch_changes.cdc_timestamp = newest.max_cdc_timestamp
                and batch_changes.cdc_sequence <= newest.max_cdc_sequence
            )
    {%- endset -%}
    {{ return(run_query(late_sql).rows[0][0] > 0) }}
{% endmacro %}


{#- The batch a bronze model's compiled SQL read: {'kind': 'rebuild' | 'increment' | 'unit_test', 'files': [...]}. -#}
{% macro bronze_compiled_batch() %}
    {%- set found = modules.re.search('lago_mago\\.bronze_batch: (\\{.*?\\}) \\*/', model.compiled_code or '') -%}
    {{ return(fromjson(found.group(1)) if found else {'kind': 'none', 'files': []}) }}
{% endmacro %}


{#- Post-hook of every bronze model: a rebuild read every file, so it replaces the model's checkpoint rows. -#}
{% macro bronze_forget_files_on_rebuild() %}
    {%- if lago_mago.bronze_compiled_batch().kind != 'rebuild' -%}
        {{ return('select 1 as nothing_to_forget') }}
    {%- endif -%}
    delete from {{ ref('bronze_processed_files') }} where model_name = {{ dbt.string_literal(this.identifier) }}
{% endmacro %}


{#-
    Post-hook of every bronze model, inside the model's transaction: record the files its compiled SQL read.
    The batch is read back from the `lago_mago.bronze_batch` comment of the compiled SQL, so a file published
    while the model ran is never recorded without having been merged.
-#}
{% macro bronze_record_batch(source_name, table_name) %}
    {%- set batch = lago_mago.bronze_compiled_batch() -%}
    {%- if not batch.files -%}
        {{ return('select 1 as nothing_to_record') }}
    {%- endif -%}
    {%- set convention = lago_mago.cdc_convention(lago_mago.source_declaration(source_name, table_name)) -%}
    insert into {{ ref('bronze_processed_files') }} (
        model_name, source_name, table_name, file_name, row_count,
        min_cdc_timestamp, max_cdc_timestamp, min_cdc_sequence, max_cdc_sequence, merged_at
    )
    select
        {{ dbt.string_literal(this.identifier) }},
        {{ dbt.string_literal(source_name) }},
        {{ dbt.string_literal(table_name) }},
        cast(filename as {{ dbt.type_string() }}),
        count(*),
        min({{ convention.timestamp }}),
        max({{ convention.timestamp }}),
        min({{ convention.sequence }}),
        max({{ convention.sequence }}),
        {{ dbt.current_timestamp() }}
    from {{ lago_mago.read_lake_files(batch.files) }}
    group by filename
{% endmacro %}
