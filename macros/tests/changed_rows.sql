{#-
    Data tests check what the last build wrote, not the whole table, so a build's tests cost what its changes
    cost. A model written by incremental builds, with a `_loaded_at` column (stamped once per build), is tested on
    the rows with the newest `_loaded_at`: every row on a first build or --full-refresh, the rows the last merge
    wrote afterwards (a history model rewrites every version of a touched key, so its per-key tests see whole
    keys). A view computed from such models, one row per key, names them in `meta.tested_on_changes_of` and is
    tested on the keys their last builds wrote: a view writes no row of its own, and reading all of it would cost
    every test a pass over every key. A test's own `where` config wins.

    The full check, every row of every model:  dbt test --vars '{full_tests: true}'

    Found through the `dispatch` search order in dbt_project.yml, before dbt's own default__get_where_subquery.
-#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if not where and not var('full_tests', false) -%}
        {%- set where = lago_mago.changed_rows_condition(relation) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}


{#- The condition picking the rows a build changed in a tested relation, or '' to test every row. -#}
{% macro changed_rows_condition(relation) %}
    {%- set node = lago_mago.project_model(relation) -%}
    {%- if node is none -%}
        {{ return('') }}
    {%- endif -%}
    {%- if lago_mago.is_tested_on_changes(relation) -%}
        {{ return(lago_mago.newest_rows(relation)) }}
    {%- endif -%}
    {%- set of = node.config.meta.get('tested_on_changes_of') -%}
    {%- if not of -%}
        {{ return('') }}
    {%- endif -%}
    {%- set key = adapter.quote(of.column) -%}
    {%- set written = [] -%}
    {%- for name in of.models -%}
        {%- set upstream = graph.nodes.get('model.' ~ project_name ~ '.' ~ name) -%}
        {%- set producer = api.Relation.create(
            database=upstream.database, schema=upstream.schema, identifier=upstream.alias) if upstream else none -%}
        {%- if producer is none or not lago_mago.is_tested_on_changes(producer) -%}
            {{ exceptions.raise_compiler_error(
                relation.identifier ~ ": meta.tested_on_changes_of names " ~ name ~ ", which is not an incremental"
                ~ " model of this project with a _loaded_at column") }}
        {%- endif -%}
        {%- do written.append('select ' ~ key ~ ' from ' ~ producer ~ ' where ' ~ lago_mago.newest_rows(producer)) -%}
    {%- endfor -%}
    {#- a NULL key is in no list: kept, for the tests that look for one -#}
    {{ return('(' ~ key ~ ' in (' ~ written | join(' union ') ~ ') or ' ~ key ~ ' is null)') }}
{% endmacro %}


{#-
    The changes of a producer's last commit to its change feed (lago_cdc), deletes and pre-images included: what
    the last build that changed it changed, where `_loaded_at` shows only what that build wrote. Nothing at parse,
    nor before a first build, nor when that commit was one or a --full-refresh: every row then has the newest
    `_loaded_at`.
-#}
{% macro last_commit_changes(relation) %}
    {%- set nothing = '(select * from ' ~ relation ~ ' where 1 = 0)' -%}
    {%- if not execute or load_relation(relation) is none -%}
        {{ return(nothing) }}
    {%- endif -%}
    {%- set version = lago_cdc.feed_version(relation) -%}
    {%- if version < 1 or lago_cdc.feed_rebuilds_after(relation, version - 1) -%}
        {{ return(nothing) }}
    {%- endif -%}
    {{ return(lago_cdc.feed_between(relation, version - 1, version)) }}
{% endmacro %}


{#- The rows of a relation its last build wrote: those with the newest `_loaded_at`. -#}
{% macro newest_rows(relation) %}
    {{ return('_loaded_at >= (select max(latest._loaded_at) from ' ~ relation ~ ' as latest)') }}
{% endmacro %}


{% macro project_model(relation) %}
    {%- if not execute or relation.identifier is not defined -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(graph.nodes.get('model.' ~ project_name ~ '.' ~ relation.identifier)) }}
{% endmacro %}


{% macro is_tested_on_changes(relation) %}
    {%- set node = lago_mago.project_model(relation) -%}
    {{ return(
        node is not none
        and node.config.materialized == 'incremental'
        and '_loaded_at' in node.columns
    ) }}
{% endmacro %}
