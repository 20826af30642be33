{#-
    The prefix on a shared development target keeps developers, and production, out of each other's tables; a
    private warehouse or production needs none. Macros that need a layer's schema
    outside a model call this with `node` none, so they get the name the models get.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif is_shared_development_target() -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}

{% macro is_shared_development_target() -%}
    {%- set production = target.name == 'prod' or target.name.endswith('_prod') -%}
    {#- dbt's `target` holds a few connection keys only: a Spark session has the host `NA` (dbt-spark's own
        placeholder), a Spark server on this machine a loopback host; a DuckDB file is local unless MotherDuck -#}
    {%- set private = (target.type == 'duckdb' and not (target.get('path') or '').startswith('md:'))
        or (target.type == 'spark' and target.get('host') in ('NA', 'localhost', '127.0.0.1')) -%}
    {{- return(not production and not private) -}}
{%- endmacro %}
