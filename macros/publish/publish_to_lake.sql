{#-
    on-run-end, on the DuckDB target: the tables of models with `meta: {publish_to_lake: true}` (Gold, in
    dbt_project.yml) that this build wrote are published into the lake as Delta tables, under
    `<LAKE_URI>/tables/<schema>/<model>/` (ingestion/published_tables.py, through the SQL function `lago_publish`
    of the dbt-duckdb plugin ingestion/dbt_publish_plugin.py named in profiles.yml).

    - A model is published when it built and every test of it in this build passed (a warning passes): a model a
      failing test names keeps its last publication, as does a model the build did not select.
    - The publication merges on the model's grain, the one its grain test declares: the columns of its
      `unique_combination_of_columns`, else its `column_checks` `unique` column.
    - `--full-refresh` publishes a new version of the whole table; otherwise a MERGE writes what changed: a table
      compared whole with its last publication (Gold: aggregates, small), or, for a model with a change feed
      (Silver), the changes of its feed since its last publication (publication_statements).
    - Views are computed when read: not published.
    - Each table is staged as a Parquet file beside the warehouse, then published; a failed publication fails the
      hook's statement, naming the table, its location and why.
    - Each publication, a MERGE that changed nothing included, records its build beside the tables: when, the Delta
      version, and how many files of each source table upstream of the model the lake held when the build started
      (mark_lake_captures), so a reader can tell whether the lake holds a capture the table does not reflect yet.

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
            {%- do statements.extend(lago_mago.publication_statements(node, staging)) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(statements | join(';\n')) }}
{% endmacro %}


{#-
    The statements that publish one model. A model with a change feed (the cdc_merge strategy: Silver, Bronze)
    publishes the latest change of each key since the feed version its last publication recorded: its consumer
    position `lake:<model>` in `change_feed_positions`, recorded after the publication, so a failed one is
    published again by the next build (a MERGE of the same changes gives the same table). Its first publication,
    `--full-refresh`, a feed that restarted since then (a rebuild) or a publication the lake no longer holds
    publishes the whole table instead.
-#}
{% macro publication_statements(node, staging) %}
    {%- set relation = lago_cdc.node_relation(node) -%}
    {%- set staged = lago_cdc.sql_string(staging ~ '/.publish_' ~ node.schema ~ '__' ~ node.alias ~ '.parquet') -%}
    {%- set rewrite = flags.FULL_REFRESH or node.config.full_refresh == true -%}
    {%- set grain = lago_mago.declared_grain(node) -%}
    {%- set arguments = [
        lago_cdc.sql_string(node.schema), lago_cdc.sql_string(node.alias), staged,
        lago_cdc.sql_string(grain | tojson)] -%}
    {%- set marks = lago_mago.upstream_sources_json(node) -%}
    {%- set statements = [] -%}
    {%- set has_feed = node.config.get('incremental_strategy') == 'cdc_merge' -%}
    {%- set position = lago_mago.published_feed_version(node) if has_feed and not rewrite else 0 -%}
    {%- if position > 0 and not lago_cdc.feed_rebuilds_after(relation, position)
        and lago_mago.lake_has_publication(node) -%}
        {%- if lago_cdc.feed_version(relation) == position -%}
            {#- the feed has not moved since the last publication: nothing to stage or read -#}
            {%- do statements.append(
                'select lago_publish_nothing(' ~ arguments[:2] | join(', ') ~ ', ' ~ marks ~ ')') -%}
            {{ return(statements) }}
        {%- endif -%}
        {%- set keys = [] -%}
        {%- for column in grain -%}
            {%- do keys.append(adapter.quote(column)) -%}
        {%- endfor -%}
        {%- do statements.append(
            'copy (select * exclude (_commit_version, _commit_timestamp) from '
            ~ lago_cdc.feed_between(relation, position, lago_cdc.feed_version_sql(relation))
            ~ " where _change_type <> 'update_preimage' qualify row_number() over (partition by "
            ~ keys | join(', ') ~ ' order by _commit_version desc) = 1) to ' ~ staged ~ ' (format parquet)') -%}
        {%- do statements.append('select lago_publish_changes(' ~ arguments | join(', ') ~ ', ' ~ marks ~ ')') -%}
    {%- else -%}
        {%- do statements.append('copy (select * from ' ~ relation ~ ') to ' ~ staged ~ ' (format parquet)') -%}
        {%- do statements.append(
            'select lago_publish(' ~ arguments | join(', ') ~ ', ' ~ ('true' if rewrite else 'false') ~ ', '
            ~ marks ~ ', ' ~ lago_mago.content_digest_sql(relation) ~ ')') -%}
    {%- endif -%}
    {%- if has_feed -%}
        {%- set positions = lago_cdc.state_table('change_feed_positions') -%}
        {%- set consumer = lago_cdc.sql_string('lake:' ~ node.alias) -%}
        {%- do statements.append(
            'delete from ' ~ positions ~ ' where consumer_name = ' ~ consumer
            ~ ' and producer_name = ' ~ lago_cdc.sql_string(node.alias)) -%}
        {%- do statements.append(
            'insert into ' ~ positions ~ ' (consumer_name, producer_name, commit_version, recorded_at) select '
            ~ consumer ~ ', ' ~ lago_cdc.sql_string(node.alias) ~ ', ' ~ lago_cdc.feed_version_sql(relation) ~ ', '
            ~ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp())) -%}
    {%- endif -%}
    {{ return(statements) }}
{% endmacro %}


{#- The feed version a model's last publication recorded (0: none). -#}
{% macro published_feed_version(node) %}
    {%- set version_sql -%}
        select coalesce(max(commit_version), 0) from {{ lago_cdc.state_table('change_feed_positions') }}
        where consumer_name = {{ lago_cdc.sql_string('lake:' ~ node.alias) }}
            and producer_name = {{ lago_cdc.sql_string(node.alias) }}
    {%- endset -%}
    {{ return(run_query(version_sql).rows[0][0] | int) }}
{% endmacro %}


{#-
    A SQL expression: a digest of a table's columns (names and types) and rows, the same for the same rows in any
    order. A whole-table publication is skipped when its Delta table's last commit holds the same digest, so a
    build that rewrote a Gold table with the same rows reads and compares nothing. 64-bit row hashes, summed.
-#}
{% macro content_digest_sql(relation) %}
    {{ return(
        "(select md5((select string_agg(column_name || ' ' || data_type, ', ' order by ordinal_position) "
        ~ "from information_schema.columns where table_schema = " ~ lago_cdc.sql_string(relation.schema)
        ~ " and table_name = " ~ lago_cdc.sql_string(relation.identifier) ~ ") || ' ' || count(*) || ' ' "
        ~ "|| coalesce(sum(hash(published_row)), 0)) from " ~ relation ~ " as published_row)") }}
{% endmacro %}


{#- Whether the lake holds the model's publication (a table removed from the lake is published whole again). -#}
{% macro lake_has_publication(node) %}
    {%- set version_sql = 'select lago_published_version(' ~ lago_cdc.sql_string(node.schema) ~ ', '
        ~ lago_cdc.sql_string(node.alias) ~ ')' -%}
    {{ return(run_query(version_sql).rows[0][0] >= 0) }}
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


{#-
    on-run-start, on the DuckDB target: the plugin takes how many files each source table has in the lake, and the
    newest one's capture time, before any model lists the lake, so a file that lands during the build counts as
    unseen (a reader is told the table may be stale) rather than seen. The plugin keeps them in memory: the
    warehouse is not written, so a build that fails changes nothing there.
-#}
{% macro mark_lake_captures() %}
    {{ return(adapter.dispatch('mark_lake_captures', 'lago_mago')()) }}
{% endmacro %}


{% macro default__mark_lake_captures() %}
    {{ return('') }}
{% endmacro %}


{#-
    The `lake` target's plugin (ingestion/dbt_lake_plugin.py) answers -1: that target reads the published tables
    and builds nothing, so a build on it stops here, before any model runs (a failed hook statement would not).
-#}
{% macro duckdb__mark_lake_captures() %}
    {%- if execute and run_query('select lago_mark_lake_captures()').columns[0].values()[0] < 0 -%}
        {{ exceptions.raise_compiler_error(
            "The target " ~ target.name ~ " reads the tables published into the lake (" ~ lago_cdc.lake_uri()
            ~ "/tables) and builds nothing: build with --target dev, then read with --target " ~ target.name
            ~ " (dbt show). Nothing was changed.") }}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}


{#- The `<source>.<table>` of the source tables upstream of a model, as a SQL string of a JSON list. -#}
{% macro upstream_sources_json(node) %}
    {%- set found = [] -%}
    {%- do lago_mago.collect_upstream_sources(node.unique_id, found, []) -%}
    {{ return(lago_cdc.sql_string(found | sort | tojson)) }}
{% endmacro %}


{#- Appends to `found` the `<source>.<table>` of every source upstream of a node (`seen`: the nodes visited). -#}
{% macro collect_upstream_sources(unique_id, found, seen) %}
    {%- set node = graph.nodes.get(unique_id) -%}
    {%- for parent in (node.depends_on.nodes if node else []) if parent not in seen -%}
        {%- do seen.append(parent) -%}
        {%- if parent.startswith('source.') -%}
            {%- set source = graph.sources[parent] -%}
            {%- do found.append(source.source_name ~ '.' ~ source.name) -%}
        {%- else -%}
            {%- do lago_mago.collect_upstream_sources(parent, found, seen) -%}
        {%- endif -%}
    {%- endfor -%}
{% endmacro %}
