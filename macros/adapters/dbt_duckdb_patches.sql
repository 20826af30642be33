{#-
    Patches of dbt-duckdb's own macros the project needs (as macros/adapters/dbt_spark_patches.sql holds
    dbt-databricks').
-#}


{#-
    dbt asks which schemas exist before a build, passing the database as a quoted relation (`"wh"`): dbt-duckdb
    compares that text with the catalogs' names, which match none, so every build ran `create schema` for every
    schema it writes (each in a transaction of its own). The name is compared unquoted here.
-#}
{% macro duckdb__list_schemas(database) -%}
    {%- set name = database | string -%}
    {%- if name | length > 1 and name.startswith('"') and name.endswith('"') -%}
        {%- set name = name[1:-1] | replace('""', '"') -%}
    {%- endif -%}
    {%- set sql -%}
        select schema_name
        from system.information_schema.schemata
        {% if database is not none -%}
            where lower(catalog_name) = {{ lago_cdc.sql_string(name | lower) }}
        {%- endif %}
    {%- endset -%}
    {{ return(run_query(sql)) }}
{%- endmacro %}
