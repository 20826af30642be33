{#-
    A change-applying model with nothing new keeps its last build instead of running.

    A model of the CDC engine reads changes only: Bronze and history the lake files its checkpoint has not
    consumed, Silver its producers' feeds since its position (`latest_changes`). When the model's SQL is built and
    an input has nothing new, the SQL says so in a comment naming the input (`nothing_new_in`), and the batch is
    empty. When every input the model depends on says so, running it would create an empty batch, describe it,
    merge nothing and record nothing: dbt-duckdb's or dbt-spark's incremental materialization costs about twenty
    statements for that. `incremental_unless_nothing_new` runs the model's hooks instead (the checkpoint's and the
    feed's post-hooks find nothing to record: `inputs_say_nothing_new`) and returns the table as it is.

    It keeps the last build only where that is what the run would do:
    - the table exists, and the run is neither a --full-refresh nor of a Python model or an enforced contract;
    - every node the model depends on is named by a marker: an input read whole (a ref outside `latest_changes`,
      a seed) has none, so such a model always runs. A model that rewrites what its producers' changes touch
      (Gold's days and months) marks them itself, when none moved and nothing else asks for a rewrite (a backfill
      rewrites days no change touched): `nothing_new_marks` (change_feed.sql);
    - `on_schema_change` is `ignore`; or `append_new_columns` and the query has no column the table lacks (a column
      declared or added since the last build is appended by the run itself); or `fail` or `sync_all_columns` and
      the query has the table's columns with the same types (else the run fails or syncs, as it would).

    The root project names it for dbt (macros/cdc_engine.sql): dbt takes a package's override of a built-in
    materialization only from the root project.
-#}


{#- The comment an input with nothing new leaves in a model's SQL; a block comment, so it can sit mid-line. -#}
{% macro nothing_new_in(unique_id) %}
    {{ return('/* lago_cdc: nothing new in ' ~ unique_id ~ ' since the last build */') }}
{% endmacro %}


{#- The unique id of a declared source table, as the model's depends_on names it. -#}
{% macro source_unique_id(source_name, table_name) %}
    {%- for unique_id in model.depends_on.nodes if unique_id in graph.sources -%}
        {%- set node = graph.sources[unique_id] -%}
        {%- if node.source_name == source_name and node.name == table_name -%}
            {{ return(unique_id) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return('source.' ~ source_name ~ '.' ~ table_name) }}
{% endmacro %}


{#-
    Whether the current model's SQL marks every node it depends on as having nothing new (nothing_new_in). Its
    post-hooks that record how far it read (the checkpoint's plan, the feed positions) then have nothing to record:
    no file was planned, no position moved. False for a model with no input, or before its SQL is built.
-#}
{% macro inputs_say_nothing_new() %}
    {%- if sql is not string or not model.depends_on.nodes -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set quiet = modules.re.findall('/\\* lago_cdc: nothing new in (\\S+) since the last build \\*/', sql) -%}
    {%- for unique_id in model.depends_on.nodes if unique_id not in quiet -%}
        {{ return(false) }}
    {%- endfor -%}
    {{ return(true) }}
{% endmacro %}


{#- Whether the current model's run would change nothing: the conditions above, the cheap ones first. -#}
{% macro nothing_new_to_build() %}
    {%- if model.language != 'sql' or should_full_refresh() or not model.depends_on.nodes -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set contract = config.get('contract') -%}
    {%- if contract and contract.enforced -%}
        {{ return(false) }}
    {%- endif -%}
    {%- if not lago_cdc.inputs_say_nothing_new() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- if existing is none or existing.is_view -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set on_schema_change = config.get('on_schema_change') or 'ignore' -%}
    {%- if on_schema_change == 'ignore' -%}
        {{ return(true) }}
    {%- elif on_schema_change not in ('append_new_columns', 'fail', 'sync_all_columns') -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set held, queried = {}, {} -%}
    {%- for column in adapter.get_columns_in_relation(existing) -%}
        {%- do held.update({column.name | lower: column.data_type | lower}) -%}
    {%- endfor -%}
    {%- for column in get_column_schema_from_query(sql) -%}
        {%- do queried.update({column.name | lower: column.data_type | lower}) -%}
    {%- endfor -%}
    {%- if on_schema_change == 'append_new_columns' -%}
        {%- for name in queried if name not in held -%}
            {{ return(false) }}
        {%- endfor -%}
        {{ return(true) }}
    {%- endif -%}
    {#- fail, sync_all_columns: a run changes nothing only when the columns and their types are the table's -#}
    {{ return(queried == held) }}
{% endmacro %}


{#-
    The body of the incremental materialization on DuckDB and Spark: `materialization` (dbt-duckdb's or
    dbt-spark's own) unless there is nothing new to build. Keeping the last build runs what a run does around
    its statement, in the same order: pre-hooks, grants, docs, post-hooks inside the transaction, its commit,
    post-hooks after it. The 'main' statement checks the table is there; the run's message is NOTHING NEW.
-#}
{% macro incremental_unless_nothing_new(materialization) %}
    {%- if not lago_cdc.nothing_new_to_build() -%}
        {{ return(materialization()) }}
    {%- endif -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}
    {%- call statement('main') -%}
        select 1 as nothing_new from {{ target_relation }} where 1 = 0
    {%- endcall -%}
    {%- do store_raw_result('main', message='NOTHING NEW', code='NOTHING NEW', rows_affected=0) -%}
    {%- do apply_grants(target_relation, config.get('grants'), should_revoke=true) -%}
    {%- do persist_docs(target_relation, model) -%}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- do adapter.commit() -%}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmacro %}
