{#-
    on-run-end, on the DuckDB target: the tables of models with `meta: {publish_to_lake: true}` (Gold, in
    dbt_project.yml) that this build wrote are published into the lake as Delta tables, under
    `<LAKE_URI>/tables/<schema>/<model>/` (ingestion/published_tables.py, through the SQL function `lago_publish`
    of the dbt-duckdb plugin ingestion/dbt_publish_plugin.py named in profiles.yml).

    - A model is published when it built and every test of it in this build passed (a warning passes): a model a
      failing test names keeps its last publication, as does a model the build did not select.
    - The publication merges on the model's grain, the one its grain test declares: the columns of its
      `unique_combination_of_columns`, else its `column_checks` `unique` column.
    - `--full-refresh` publishes a new version of the whole table; otherwise a MERGE writes what changed.
    - Views are computed when read: not published.
    - Each table is staged as a Parquet file beside the warehouse, then published; a failed publication fails the
      hook's statement, naming the table, its location and why.

    Spark and Databricks: every model is a Delta table already; nothing to do.
-#}
{% macro publish_to_lake(results) %}
    {{ return(adapter.dispatch('publish_to_lake', 'lago_mago')(results)) }}
{% endmacro %}


{% macro default__publish_to_lake(results) %}
    {{ return('') }}
{% endmacro %}


{% macro duckdb__publish_to_lake(results) %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {#- the models a failing test names, and the nodes that did not build -#}
    {%- set failed = [] -%}
    {%- for result in results if result.status not in ('success', 'pass', 'warn') -%}
        {%- do failed.append(result.node.unique_id) -%}
        {%- if result.node.resource_type == 'test' -%}
            {%- do failed.extend(result.node.depends_on.nodes) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set staging = target.path.rsplit('/', 1)[0] if '/' in target.path else '.' -%}
    {%- set statements = [] -%}
    {%- for result in results if result.node.resource_type == 'model' and result.status == 'success' -%}
        {%- set node = result.node -%}
        {%- if node.config.meta.get('publish_to_lake') and node.config.materialized != 'view'
            and node.unique_id not in failed -%}
            {%- set relation = api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias) -%}
            {%- set staged = lago_cdc.sql_string(staging ~ '/.publish_' ~ node.schema ~ '__' ~ node.alias ~ '.parquet') -%}
            {%- set rewrite = 'true' if flags.FULL_REFRESH or node.config.full_refresh == true else 'false' -%}
            {%- do statements.append('copy (select * from ' ~ relation ~ ') to ' ~ staged ~ ' (format parquet)') -%}
            {%- do statements.append(
                'select lago_publish(' ~ lago_cdc.sql_string(node.schema) ~ ', ' ~ lago_cdc.sql_string(node.alias)
                ~ ', ' ~ staged ~ ', ' ~ lago_cdc.sql_string(lago_mago.declared_grain(node) | tojson) ~ ', '
                ~ rewrite ~ ')') -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(statements | join(';\n')) }}
{% endmacro %}


{#- The columns a model's grain test declares unique together (see publish_to_lake). -#}
{% macro declared_grain(node) %}
    {%- set single = [] -%}
    {%- for test in graph.nodes.values() if test.resource_type == 'test' and test.attached_node == node.unique_id -%}
        {%- set metadata = test.test_metadata or {} -%}
        {%- if metadata.name == 'unique_combination_of_columns' -%}
            {{ return(metadata.kwargs.combination_of_columns) }}
        {%- elif metadata.name == 'column_checks' and (metadata.kwargs.unique or []) | length == 1 -%}
            {%- do single.extend(metadata.kwargs.unique) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if single -%}
        {{ return(single) }}
    {%- endif -%}
    {{ exceptions.raise_compiler_error(
        "publish_to_lake: " ~ node.name ~ " declares no grain: give it a unique_combination_of_columns test, or a "
        ~ "column_checks test with one unique column") }}
{% endmacro %}
