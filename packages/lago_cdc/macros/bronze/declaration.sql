{#-
    A table's declaration is its source node in models/bronze/<source>/_<source>__sources.yml: columns with
    data_type, and meta.primary_key / meta.ordering_column / meta.cdc. Available at execution time only.
-#}

{% macro source_declaration(source_name, table_name) %}
    {%- for node in graph.sources.values() -%}
        {%- if node.source_name == source_name and node.name == table_name -%}
            {{ return(node) }}
        {%- endif -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("no source table " ~ source_name ~ "." ~ table_name ~ " is declared") }}
{% endmacro %}


{% macro declared_primary_key(declaration) %}
    {%- set key = declaration.meta.get('primary_key') -%}
    {%- if key is string -%}
        {%- set key = [key] -%}
    {%- endif -%}
    {%- if not key -%}
        {{ exceptions.raise_compiler_error(declaration.unique_id ~ ": meta.primary_key is not declared") }}
    {%- endif -%}
    {{ return(key) }}
{% endmacro %}


{#-
    The CDC convention of a table's change files, as SQL expressions over a raw file row. The default is the
    lake's native one (_cdc_operation I/U/D, _cdc_timestamp, _cdc_sequence). A table written by another tool
    declares its own under meta.cdc, e.g. the reference tool's files or Debezium:
        cdc: {operation_column: op, timestamp_column: DtAtualizacao}
        cdc: {operation_column: op, insert: [c, r], update: [u], delete: [d],
              timestamp_column: ts_ms, timestamp_epoch_unit: ms, sequence_column: lsn}
    Changes are ordered by (timestamp, sequence, file name, position in the file). Without a sequence column the
    sequence is 0, so distinct changes of one key at one time are ordered by file and position on every build;
    rows are copies of one change only when their content is identical too (macros/bronze/bronze_cdc.sql).
    An operation code outside the declared lists is NULL, and a file holding one is refused (checkpoint.sql), as
    is a file with a row without a primary key value (`row_checks`): a change without its key cannot be merged.
-#}
{% macro cdc_convention(declaration) %}
    {%- set cdc = declaration.meta.get('cdc') or {} -%}
    {%- set operation_column = cdc.get('operation_column', '_cdc_operation') -%}
    {%- set timestamp_column = cdc.get('timestamp_column', '_cdc_timestamp') -%}
    {%- set sequence_column = cdc.get('sequence_column', none if cdc else '_cdc_sequence') -%}
    {%- set operation = adapter.quote(operation_column) -%}
    {%- set timestamp = adapter.quote(timestamp_column) -%}

    {%- set codes = {} -%}
    {%- set operation_sql -%}
        case
            {%- for code, default in [('I', ['I']), ('U', ['U']), ('D', ['D'])] %}
            {%- set listed = cdc.get({'I': 'insert', 'U': 'update', 'D': 'delete'}[code], default) %}
            {%- do codes.update({code: listed}) %}
            when cast({{ operation }} as {{ dbt.type_string() }}) in (
                {%- for value in listed %}{{ lago_cdc.sql_string(value) }}{{ ', ' if not loop.last }}{% endfor -%}
            ) then '{{ code }}'
            {%- endfor %}
        end
    {%- endset -%}

    {%- if cdc.get('timestamp_epoch_unit') == 'ms' -%}
        {%- set timestamp_sql = lago_cdc.epoch_ms_to_timestamp(timestamp) -%}
    {%- else -%}
        {%- set timestamp_sql = lago_cdc.cast_to_timestamp_tz(timestamp) -%}
    {%- endif -%}

    {%- if sequence_column -%}
        {%- set sequence_sql = "cast(" ~ adapter.quote(sequence_column) ~ " as " ~ dbt.type_bigint() ~ ")" -%}
    {%- else -%}
        {%- set sequence_sql = "cast(0 as " ~ dbt.type_bigint() ~ ")" -%}
    {%- endif -%}

    {%- set key = lago_cdc.declared_primary_key(declaration) -%}
    {%- set columns = [operation_column, timestamp_column] + ([sequence_column] if sequence_column else []) + key -%}
    {%- set row_checks = [] -%}
    {%- for column in key -%}
        {%- do row_checks.append(('key ' ~ column, adapter.quote(column))) -%}
    {%- endfor -%}
    {%- set description = operation_column ~ " in " ~ tojson(codes) ~ ", " ~ timestamp_column
        ~ (", " ~ sequence_column if sequence_column else ", no sequence column") -%}
    {{ return({
        'operation': operation_sql,
        'timestamp': timestamp_sql,
        'sequence': sequence_sql,
        'columns': columns,
        'description': description,
        'row_checks': row_checks,
        'ordered_by_position': not sequence_column,
    }) }}
{% endmacro %}


{% macro declared_type(data_type) %}
    {{ return(adapter.dispatch('declared_type', 'lago_cdc')(data_type)) }}
{% endmacro %}

{% macro default__declared_type(data_type) %}
    {{ return(data_type) }}
{% endmacro %}


{#- Unit tests run without the dbt graph: a unit test supplies the declaration by overriding this macro. -#}
{% macro unit_test_declaration() %}
    {{ exceptions.raise_compiler_error(
        "a unit test of a bronze model must override the macro unit_test_declaration with the table's"
        ~ " declaration: {meta: {primary_key: [...]}, columns: {<name>: {name: ..., data_type: ...}}}") }}
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
