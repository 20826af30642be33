{#-
    The schema of every layer (bronze, silver, gold, snapshots), and of everything else (the target's schema).

    A warehouse private to one developer (a DuckDB file, a Spark on this machine) and a production target
    (`prod`, `*_prod`) get the plain layer names: `bronze`. A warehouse that developers share (Databricks, a
    Spark cluster) gets the developer's target schema as a prefix on a development target: `<schema>_bronze`,
    so that two developers never build into each other's tables, and production into neither.

    Macros that need a layer's schema outside a model (macros/lake.sql) call this with `node` none and get the
    same name the models get.
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

{#- True on a development target of a warehouse that other developers reach too. -#}
{% macro is_shared_development_target() -%}
    {%- set production = target.name == 'prod' or target.name.endswith('_prod') -%}
    {#- dbt's `target` holds a few connection keys only: a Spark session has the host `NA` (dbt-spark's own
        placeholder), a Spark server on this machine a loopback host; a DuckDB file is local unless MotherDuck -#}
    {%- set private = (target.type == 'duckdb' and not (target.get('path') or '').startswith('md:'))
        or (target.type == 'spark' and target.get('host') in ('NA', 'localhost', '127.0.0.1')) -%}
    {{- return(not production and not private) -}}
{%- endmacro %}
