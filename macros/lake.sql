{#-
    The lake: where the raw CDC files of a source table live, and how an engine lists and reads them.
    Layout (written by `python -m ingestion`):
        <LAKE_URI>/raw/<source>/full-load/<table>/<table>_<yyyymmdd_HHMMSS_ffffff>.parquet
        <LAKE_URI>/raw/<source>/cdc/<table>/<table>_<yyyymmdd_HHMMSS_ffffff>.parquet
-#}

{% macro lake_uri() %}
    {{ return(env_var('LAKE_URI', 'lake').rstrip('/')) }}
{% endmacro %}


{% macro lake_table_patterns(source_name, table_name) %}
    {%- set folder = lago_mago.lake_uri() ~ '/raw/' ~ source_name -%}
    {%- set file_pattern = table_name ~ '/' ~ table_name ~ '_*.parquet' -%}
    {{ return([folder ~ '/full-load/' ~ file_pattern, folder ~ '/cdc/' ~ file_pattern]) }}
{% endmacro %}


{#- Every capture file of a table, sorted by name (= capture time); an absent folder is no file. -#}
{% macro list_lake_files(source_name, table_name) %}
    {{ return(adapter.dispatch('list_lake_files', 'lago_mago')(source_name, table_name)) }}
{% endmacro %}

{% macro duckdb__list_lake_files(source_name, table_name) %}
    {%- set globs = [] -%}
    {%- for pattern in lago_mago.lake_table_patterns(source_name, table_name) -%}
        {%- do globs.append("select file from glob(" ~ dbt.string_literal(pattern) ~ ")") -%}
    {%- endfor -%}
    {%- set files = run_query(globs | join(' union all ')).columns[0].values() | list -%}
    {{ return(files | sort(attribute=none) | list) }}
{% endmacro %}


{#- A relation reading the given files with a `filename` column naming each row's file. -#}
{% macro read_lake_files(files) %}
    {{ return(adapter.dispatch('read_lake_files', 'lago_mago')(files)) }}
{% endmacro %}

{% macro duckdb__read_lake_files(files) %}
    {%- set literals = [] -%}
    {%- for file in files -%}
        {%- do literals.append(dbt.string_literal(file)) -%}
    {%- endfor -%}
    read_parquet([{{ literals | join(', ') }}], filename = true, union_by_name = true)
{%- endmacro %}


{#- The lower-cased column names of a relation (e.g. lake files read together), from a query that reads no row. -#}
{% macro relation_column_names(relation) %}
    {%- set found = run_query('select * from ' ~ relation ~ ' where 1 = 0') -%}
    {{ return(found.column_names | map('lower') | list) }}
{% endmacro %}
