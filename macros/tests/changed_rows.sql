{#-
    Data tests on incremental models check what the last build wrote, not the whole table, so a build's tests
    cost what its changes cost. A model written by incremental builds, with a `_loaded_at` column (stamped once
    per build), is tested on the rows with the newest `_loaded_at`: every row on a first build or --full-refresh,
    the rows the last merge wrote afterwards (a history model rewrites every version of a touched key, so its
    per-key tests see whole keys). A test's own `where` config wins.

    The full check, every row of every model:  dbt test --vars '{full_tests: true}'

    Found through the `dispatch` search order in dbt_project.yml, before dbt's own default__get_where_subquery.
-#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if not where and not var('full_tests', false) and lago_mago.is_tested_on_changes(relation) -%}
        {%- set where = "_loaded_at >= (select max(latest._loaded_at) from " ~ relation ~ " as latest)" -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}


{% macro is_tested_on_changes(relation) %}
    {%- if not execute or relation.identifier is not defined -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.' ~ relation.identifier) -%}
    {{ return(
        node is not none
        and node.config.materialized == 'incremental'
        and '_loaded_at' in node.columns
    ) }}
{% endmacro %}
