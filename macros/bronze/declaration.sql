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
    Operation codes outside the declared lists become NULL and are never applied.
-#}
{% macro cdc_convention(declaration) %}
    {%- set cdc = declaration.meta.get('cdc') or {} -%}
    {%- set operation = adapter.quote(cdc.get('operation_column', '_cdc_operation')) -%}
    {%- set timestamp = adapter.quote(cdc.get('timestamp_column', '_cdc_timestamp')) -%}
    {%- set sequence = cdc.get('sequence_column', none if cdc else '_cdc_sequence') -%}

    {%- set operation_sql -%}
        case
            {%- for code, default in [('I', ['I']), ('U', ['U']), ('D', ['D'])] %}
            {%- set codes = cdc.get({'I': 'insert', 'U': 'update', 'D': 'delete'}[code], default) %}
            when cast({{ operation }} as {{ dbt.type_string() }}) in (
                {%- for value in codes %}{{ dbt.string_literal(value) }}{{ ', ' if not loop.last }}{% endfor -%}
            ) then '{{ code }}'
            {%- endfor %}
        end
    {%- endset -%}

    {%- if cdc.get('timestamp_epoch_unit') == 'ms' -%}
        {%- set timestamp_sql = lago_mago.epoch_ms_to_timestamp(timestamp) -%}
    {%- else -%}
        {%- set timestamp_sql = lago_mago.cast_to_timestamp_tz(timestamp) -%}
    {%- endif -%}

    {%- if sequence -%}
        {%- set sequence_sql = "cast(" ~ adapter.quote(sequence) ~ " as " ~ dbt.type_bigint() ~ ")" -%}
    {%- else -%}
        {%- set sequence_sql = "cast(0 as " ~ dbt.type_bigint() ~ ")" -%}
    {%- endif -%}

    {{ return({'operation': operation_sql, 'timestamp': timestamp_sql, 'sequence': sequence_sql}) }}
{% endmacro %}


{#- A declared column type (sources YAML `data_type`, in DuckDB's words) in the engine's words. -#}
{% macro declared_type(data_type) %}
    {{ return(adapter.dispatch('declared_type', 'lago_mago')(data_type)) }}
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
