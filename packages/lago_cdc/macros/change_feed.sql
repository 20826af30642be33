{#-
    The change feed of a table (Delta Lake's Change Data Feed semantics, on every engine): every row a merge
    changed, with `_change_type` ('insert', 'update_preimage', 'update_postimage', 'delete'), `_commit_version`
    (increases with each merge) and `_commit_timestamp`, beside the table's own columns as they were before
    (pre-image, delete) or after (post-image, insert) the change.

    - Spark and Databricks: Delta's own feed (`delta.enableChangeDataFeed`; `table_changes_by_path()` on Spark,
      `table_changes()` on Databricks); versions are the table's Delta versions.
    - DuckDB: the table `<table>__changes` beside it, written by the cdc_merge strategy in the same transaction as
      the merge and the checkpoint; versions are counted in `change_feed_commits`.

    Producers are the models built with the cdc_merge strategy (Bronze, Silver). A consumer (Silver, Gold) reads
    the changes since its last build: its position per producer is kept in `change_feed_positions`, written by its
    post-hook `record_feed_positions()`. A producer rebuilt by --full-refresh starts a new feed: a consumer that
    read the old one refuses to go on incrementally and asks for its own --full-refresh.

    Reading a feed by hand, changes after version 12:
        DuckDB:  select * from bronze.bronze_loyalty__clientes__changes where _commit_version > 12
        Spark:   select * from table_changes('bronze.bronze_loyalty__clientes', 13)
-#}


{% macro feed_relation(relation) %}
    {{ return(api.Relation.create(
        database=relation.database, schema=relation.schema, identifier=relation.identifier ~ '__changes')) }}
{% endmacro %}


{% macro node_relation(node) %}
    {{ return(api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias)) }}
{% endmacro %}


{% macro feed_version(relation) %}
    {{ return(adapter.dispatch('feed_version', 'lago_cdc')(relation)) }}
{% endmacro %}

{% macro default__feed_version(relation) %}
    {%- set version_sql -%}
        select coalesce(max(commit_version), 0) from {{ lago_cdc.state_table('change_feed_commits') }}
        where model_name = {{ lago_cdc.sql_string(relation.identifier) }}
    {%- endset -%}
    {{ return(run_query(version_sql).rows[0][0] | int) }}
{% endmacro %}

{% macro spark__feed_version(relation) %}
    {%- if load_relation(relation) is none -%}
        {{ return(0) }}
    {%- endif -%}
    {{ return(lago_cdc.spark_feed_history(relation, 0).current) }}
{% endmacro %}

{#- Spark and Databricks, from one `describe history`: the table's latest version, and the versions after
    `after_version` that rebuilt it (a CREATE or REPLACE). -#}
{% macro spark_feed_history(relation, after_version) %}
    {%- set history = {'current': 0, 'rebuilds': []} -%}
    {%- for row in run_query('describe history ' ~ relation).rows -%}
        {%- do history.update({'current': [history.current, row['version'] | int] | max}) -%}
        {%- if row['version'] > after_version and ('CREATE' in row['operation'] or 'REPLACE' in row['operation']) -%}
            {%- do history.rebuilds.append(row['version']) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(history) }}
{% endmacro %}


{#-
    The same as SQL in the statement that reads or records it. DuckDB resolves it there, so a compiled model reads
    the same whatever the versions; Spark's table_changes() takes literal versions only, so they are asked first,
    or taken from `known` when the caller has just asked (each question is a statement of its own on Spark).
-#}
{% macro feed_version_sql(relation, known=none) %}
    {{ return(adapter.dispatch('feed_version_sql', 'lago_cdc')(relation, known)) }}
{% endmacro %}

{% macro default__feed_version_sql(relation, known) %}
    {{ return(
        "(select coalesce(max(commit_version), 0) from " ~ lago_cdc.state_table('change_feed_commits')
        ~ " where model_name = " ~ lago_cdc.sql_string(relation.identifier) ~ ")") }}
{% endmacro %}

{% macro spark__feed_version_sql(relation, known) %}
    {{ return(lago_cdc.feed_version(relation) if known is none else known) }}
{% endmacro %}


{% macro feed_rebuilds_after(relation, version) %}
    {{ return(adapter.dispatch('feed_rebuilds_after', 'lago_cdc')(relation, version)) }}
{% endmacro %}

{% macro default__feed_rebuilds_after(relation, version) %}
    {%- set rebuilds_sql -%}
        select commit_version from {{ lago_cdc.state_table('change_feed_commits') }}
        where model_name = {{ lago_cdc.sql_string(relation.identifier) }}
            and commit_operation = 'create' and commit_version > {{ version }}
    {%- endset -%}
    {{ return(run_query(rebuilds_sql).columns[0].values() | list) }}
{% endmacro %}

{% macro spark__feed_rebuilds_after(relation, version) %}
    {{ return(lago_cdc.spark_feed_history(relation, version).rebuilds) }}
{% endmacro %}


{#- The feed's changes after one version up to another, each a number or an SQL expression giving it. -#}
{% macro feed_between(relation, after_version, upto_version) %}
    {{ return(adapter.dispatch('feed_between', 'lago_cdc')(relation, after_version, upto_version)) }}
{% endmacro %}

{% macro default__feed_between(relation, after_version, upto_version) %}
    {%- set feed = lago_cdc.feed_relation(relation) -%}
    {%- if load_relation(feed) is none -%}
        {{ exceptions.raise_compiler_error(
            relation ~ " has no change feed (" ~ feed ~ "): build it again with --full-refresh") }}
    {%- endif -%}
    {{ return(
        "(select * from " ~ feed ~ " where _commit_version > " ~ after_version
        ~ " and _commit_version <= " ~ upto_version ~ ")") }}
{% endmacro %}

{% macro spark__feed_between(relation, after_version, upto_version) %}
    {%- if after_version >= upto_version -%}
        {{ return(
            "(select *, cast(null as string) as _change_type, cast(null as bigint) as _commit_version,"
            ~ " cast(null as timestamp) as _commit_timestamp from " ~ relation ~ " where 1 = 0)") }}
    {%- endif -%}
    {#-
        By the table's location, not its name: on Spark 4 with Delta 4.4, table_changes('<name>', ...) in a query
        that also reads the table by name (a CTE, a join, an IN subquery: the Gold models read a producer and its
        changes together) resolves to the table's current rows, without the feed's columns.
    -#}
    {%- set location = run_query('describe detail ' ~ relation).columns['location'].values()[0] -%}
    {{ return(
        "(select * from table_changes_by_path(" ~ lago_cdc.sql_string(location)
        ~ ", " ~ (after_version + 1) ~ ", " ~ upto_version ~ "))") }}
{% endmacro %}

{#- Databricks documents table_changes() by name only -#}
{% macro databricks__feed_between(relation, after_version, upto_version) %}
    {%- if after_version >= upto_version -%}
        {{ return(lago_cdc.spark__feed_between(relation, after_version, upto_version)) }}
    {%- endif -%}
    {{ return(
        "(select * from table_changes(" ~ lago_cdc.sql_string(relation.schema ~ '.' ~ relation.identifier)
        ~ ", " ~ (after_version + 1) ~ ", " ~ upto_version ~ "))") }}
{% endmacro %}


{#- This model's position in a producer's feed, as SQL (see feed_version_sql). -#}
{% macro feed_position_sql(producer, known=none) %}
    {{ return(adapter.dispatch('feed_position_sql', 'lago_cdc')(producer, known)) }}
{% endmacro %}

{% macro default__feed_position_sql(producer, known) %}
    {{ return(
        "(select max(commit_version) from " ~ lago_cdc.state_table('change_feed_positions')
        ~ " where consumer_name = " ~ lago_cdc.sql_string(this.identifier)
        ~ " and producer_name = " ~ lago_cdc.sql_string(producer.identifier) ~ ")") }}
{% endmacro %}

{% macro spark__feed_position_sql(producer, known) %}
    {{ return(lago_cdc.feed_position(producer) if known is none else known) }}
{% endmacro %}


{% macro feed_position(producer) %}
    {%- set positions = lago_cdc.state_table('change_feed_positions') -%}
    {%- if load_relation(positions) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set position_sql -%}
        select max(commit_version) from {{ positions }}
        where consumer_name = {{ lago_cdc.sql_string(this.identifier) }}
            and producer_name = {{ lago_cdc.sql_string(producer.identifier) }}
    {%- endset -%}
    {%- set found = run_query(position_sql).rows[0][0] -%}
    {{ return(none if found is none else found | int) }}
{% endmacro %}


{#-
    What changes_since_last_build asks of a producer's feed, in one question: this model's position in it (none
    before its first recorded build), the feed's version, and whether a rebuild of the producer came after the
    position. Each question is a statement: milliseconds of dbt's own work on DuckDB, a Spark job on Spark.
-#}
{% macro feed_state(producer) %}
    {{ return(adapter.dispatch('feed_state', 'lago_cdc')(producer)) }}
{% endmacro %}

{% macro default__feed_state(producer) %}
    {%- set positions = lago_cdc.state_table('change_feed_positions') -%}
    {%- if load_relation(positions) is none -%}
        {{ return({'position': none, 'current': lago_cdc.feed_version(producer), 'rebuilt': false}) }}
    {%- endif -%}
    {#- the position and the version as the statements that read the feed ask them, and the rebuilds after it -#}
    {%- set position = lago_cdc.feed_position_sql(producer) -%}
    {%- set state_sql -%}
        select
            {{ position }} as position,
            {{ lago_cdc.feed_version_sql(producer) }} as current,
            (
                select count(*) from {{ lago_cdc.state_table('change_feed_commits') }}
                where model_name = {{ lago_cdc.sql_string(producer.identifier) }} and commit_operation = 'create'
                    and commit_version > coalesce({{ position }}, 0)
            ) as rebuilds
    {%- endset -%}
    {%- set row = run_query(state_sql).rows[0] -%}
    {{ return({'position': none if row[0] is none else row[0] | int, 'current': row[1] | int, 'rebuilt': row[2] > 0}) }}
{% endmacro %}

{#- Spark and Databricks: the position from `change_feed_positions`, the rest from one `describe history`. -#}
{% macro spark__feed_state(producer) %}
    {%- set position = lago_cdc.feed_position(producer) -%}
    {%- if load_relation(producer) is none -%}
        {{ return({'position': position, 'current': 0, 'rebuilt': false}) }}
    {%- endif -%}
    {%- set history = lago_cdc.spark_feed_history(producer, position if position is not none else 0) -%}
    {{ return({'position': position, 'current': history.current, 'rebuilt': history.rebuilds | length > 0}) }}
{% endmacro %}


{#- A producer rebuilt since this model last read it has lost the changes in between: only a rebuild is exact. -#}
{% macro changes_since_last_build(producer) %}
    {{ return(lago_cdc.feed_since_last_build(producer).changes) }}
{% endmacro %}

{#-
    The same, with whether the feed has moved since the position: {changes: subquery, nothing_new: bool,
    producer_id: the producer's unique id}.
-#}
{% macro feed_since_last_build(producer) %}
    {%- set state = lago_cdc.feed_state(producer) -%}
    {%- set position, current = state.position, state.current -%}
    {%- set fix = " Run: dbt build --full-refresh --select " ~ this.identifier ~ "+" -%}
    {%- if position is none -%}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ " has no position in the change feed of " ~ producer.identifier ~ "." ~ fix) }}
    {%- endif -%}
    {%- if state.rebuilt or position > current -%}
        {{ exceptions.raise_compiler_error(
            producer.identifier ~ " was rebuilt (--full-refresh) after " ~ this.identifier
            ~ " last read its changes (version " ~ position ~ "), so they cannot be applied incrementally." ~ fix) }}
    {%- endif -%}
    {{ return({
        'changes': lago_cdc.feed_between(
            producer, lago_cdc.feed_position_sql(producer, position), lago_cdc.feed_version_sql(producer, current)),
        'nothing_new': position == current,
        'producer_id': lago_cdc.producer_node(producer).unique_id,
    }) }}
{% endmacro %}


{#-
    For a model whose rows come from its producers' changes alone (Silver through latest_changes, Gold rewriting
    the days its producers' changes touch): when none of the feeds it read (feed_since_last_build) moved, the
    comments that say so in its SQL (materializations/nothing_new.sql), else nothing. Only the model knows its rows
    come from those changes alone, so it asks for them itself.
-#}
{% macro nothing_new_marks(feeds) %}
    {%- set marks = [] -%}
    {%- for feed in feeds -%}
        {%- if not feed.nothing_new -%}
            {{ return('') }}
        {%- endif -%}
        {%- do marks.append(lago_cdc.nothing_new_in(feed.producer_id)) -%}
    {%- endfor -%}
    {{ return(marks | join(' ')) }}
{% endmacro %}


{% macro latest_changes(producer) %}
    {%- if not is_incremental() -%}
        {{ return("(select * from " ~ producer ~ ")") }}
    {%- endif -%}
    {%- set key = lago_cdc.producer_key(producer) -%}
    {%- set columns = adapter.get_columns_in_relation(producer) -%}
    {%- set feed = lago_cdc.feed_since_last_build(producer) -%}
    {%- set latest -%}
        (
            {%- if feed.nothing_new %}
            {{ lago_cdc.nothing_new_marks([feed]) }}
            {%- endif %}
            select
                {%- for column in columns if column.name | lower != '_cdc_operation' %}
                {{ adapter.quote(column.name) }},
                {%- endfor %}
                case when _change_type = 'delete' then 'D' else _cdc_operation end as _cdc_operation
            from (
                {{ lago_cdc.first_per_group(
                    feed.changes ~ ' as changes',
                    lago_cdc.key_columns(key),
                    "_commit_version desc, case when _change_type = 'update_preimage' then 0 else 1 end desc",
                    '_change_rank') }}
            ) as latest
        )
    {%- endset -%}
    {{ return(latest) }}
{% endmacro %}


{% macro producer_node(producer) %}
    {%- set found = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
        | selectattr('alias', 'equalto', producer.identifier) | list -%}
    {%- if not found -%}
        {{ exceptions.raise_compiler_error(producer ~ " is not a model of this project") }}
    {%- endif -%}
    {{ return(found[0]) }}
{% endmacro %}


{% macro producer_key(producer) %}
    {%- set node = lago_cdc.producer_node(producer) -%}
    {%- set key = node.config.get('unique_key') -%}
    {%- if key is none -%}
        {%- set key = lago_cdc.declared_primary_key(lago_cdc.upstream_source_declaration(node)) -%}
    {%- endif -%}
    {{ return([key] if key is string else key) }}
{% endmacro %}


{% macro upstream_source_declaration(node) %}
    {%- for parent in node.depends_on.nodes if parent in graph.sources -%}
        {{ return(graph.sources[parent]) }}
    {%- endfor -%}
    {%- for parent in node.depends_on.nodes if parent in graph.nodes -%}
        {{ return(lago_cdc.upstream_source_declaration(graph.nodes[parent])) }}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error(node.unique_id ~ " does not descend from a declared source table") }}
{% endmacro %}


{#- Post-hook of a consumer. Where there is nothing to write it renders to nothing, which dbt runs as no statement. -#}
{% macro record_feed_positions() %}
    {#- no feed moved: every position is where it was (on Spark, asking each producer's version and merging would
        still cost a `describe history` each and a Delta MERGE) -#}
    {%- if not execute or lago_cdc.inputs_say_nothing_new() -%}
        {{ return('') }}
    {%- endif -%}
    {%- set positions = lago_cdc.state_table('change_feed_positions') -%}
    {%- set producers = [] -%}
    {%- for parent in model.depends_on.nodes if parent in graph.nodes -%}
        {%- set node = graph.nodes[parent] -%}
        {%- if node.config.get('incremental_strategy') == 'cdc_merge' -%}
            {%- do producers.append(lago_cdc.node_relation(node)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if not producers -%}
        {{ return('') }}
    {%- endif -%}
    {%- set values = [] -%}
    {%- for producer in producers -%}
        {%- do values.append(
            "select " ~ lago_cdc.sql_string(this.identifier) ~ " as consumer_name, "
            ~ lago_cdc.sql_string(producer.identifier) ~ " as producer_name, "
            ~ "cast(" ~ lago_cdc.feed_version_sql(producer) ~ " as " ~ dbt.type_bigint() ~ ") as commit_version, "
            ~ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) ~ " as recorded_at") -%}
    {%- endfor -%}
    {{ return(adapter.dispatch('write_feed_positions', 'lago_cdc')(positions, values)) }}
{% endmacro %}

{#- only positions that moved are written, so a build that read nothing new changes no row -#}
{% macro default__write_feed_positions(positions, values) %}
    delete from {{ positions }}
    where
        consumer_name = {{ lago_cdc.sql_string(this.identifier) }}
        and exists (
            select 1 from ({{ values | join(' union all ') }}) as read_now
            where read_now.producer_name = {{ positions }}.producer_name
                and read_now.commit_version <> {{ positions }}.commit_version
        );
    insert into {{ positions }} (consumer_name, producer_name, commit_version, recorded_at)
    select read_now.consumer_name, read_now.producer_name, read_now.commit_version, read_now.recorded_at
    from ({{ values | join(' union all ') }}) as read_now
    where not exists (
        select 1 from {{ positions }} as held
        where held.consumer_name = read_now.consumer_name and held.producer_name = read_now.producer_name
    )
{% endmacro %}

{#- a Spark statement is one statement: MERGE replaces this consumer's positions at once -#}
{% macro spark__write_feed_positions(positions, values) %}
    merge into {{ positions }} as target
    using ({{ values | join(' union all ') }}) as source
        on target.consumer_name = source.consumer_name and target.producer_name = source.producer_name
    when matched and target.commit_version <> source.commit_version then
        update set commit_version = source.commit_version, recorded_at = source.recorded_at
    when not matched then insert (consumer_name, producer_name, commit_version, recorded_at)
        values (source.consumer_name, source.producer_name, source.commit_version, source.recorded_at)
{% endmacro %}


{% macro record_feed_rebuild() %}
    {{ return(adapter.dispatch('record_feed_rebuild', 'lago_cdc')()) }}
{% endmacro %}

{% macro default__record_feed_rebuild() %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set first_build = lago_cdc.feed_version(this) == 0 -%}
    {%- if not (should_full_refresh() or first_build) -%}
        {{ return('') }}
    {%- endif -%}
    {%- set feed = lago_cdc.feed_relation(this) -%}
    drop table if exists {{ feed }};
    create table {{ feed }} as
    select
        *,
        cast(null as {{ dbt.type_string() }}) as _change_type,
        cast(null as {{ dbt.type_bigint() }}) as _commit_version,
        {{ lago_cdc.cast_to_timestamp_tz('null') }} as _commit_timestamp
    from {{ this }}
    where 1 = 0;
    {{ lago_cdc.record_feed_commit(this, lago_cdc.feed_version(this) + 1, 'create') }}
{% endmacro %}

{#- Delta records its own feed: nothing to write (an empty hook is no statement: dbt skips it) -#}
{% macro spark__record_feed_rebuild() %}
    {{ return('') }}
{% endmacro %}


{% macro record_feed_commit(relation, version, operation) %}
    insert into {{ lago_cdc.state_table('change_feed_commits') }}
        (model_name, commit_version, commit_operation, committed_at)
    values (
        {{ lago_cdc.sql_string(relation.identifier) }},
        {{ version }},
        {{ lago_cdc.sql_string(operation) }},
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }}
    )
{% endmacro %}


{#-
    In the merge's transaction, before it deletes anything: feed and table agree. `preimages` holds the target's
    rows of the changed keys (each with the incoming `_incoming_operation`), read once by the merge.
-#}
{% macro write_feed_sql(target, changes, preimages, key, columns) %}
    {%- set feed = lago_cdc.feed_relation(target) -%}
    {%- set version = lago_cdc.feed_version(target) + 1 -%}
    {%- for column in columns %}
    alter table {{ feed }} add column if not exists {{ adapter.quote(column.name) }} {{ column.data_type }};
    {%- endfor %}

    insert into {{ feed }} by name
    select
        preimages.* exclude (_target_row, _incoming_operation),
        case when preimages._incoming_operation = 'D' then 'delete' else 'update_preimage' end as _change_type,
        {{ version }} as _commit_version,
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }} as _commit_timestamp
    from {{ preimages }} as preimages;

    insert into {{ feed }} by name
    select
        {%- for column in columns %}
        changes.{{ adapter.quote(column.name) }},
        {%- endfor %}
        case
            when exists (
                select 1 from {{ preimages }} as preimages
                where {{ lago_cdc.key_join(key, 'changes', 'preimages') }}
            ) then 'update_postimage'
            else 'insert'
        end as _change_type,
        {{ version }} as _commit_version,
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }} as _commit_timestamp
    from {{ changes }} as changes
    where changes._cdc_operation <> 'D';

    {#- a merge of no change is no commit: a build that read nothing new changes no row -#}
    insert into {{ lago_cdc.state_table('change_feed_commits') }}
        (model_name, commit_version, commit_operation, committed_at)
    select
        {{ lago_cdc.sql_string(target.identifier) }},
        {{ version }},
        'merge',
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }}
    where exists (select 1 from {{ changes }});
{% endmacro %}
