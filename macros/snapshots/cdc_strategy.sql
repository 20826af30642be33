{#-
    Snapshot strategy `cdc`: dbt's timestamp strategy (updated_at = _cdc_timestamp, one version per capture in
    which a row changed), with the unique key read from the declaration of the source table the snapshot
    descends from (meta.primary_key), so keys are written once, in the sources YAML.
-#}
{% macro snapshot_cdc_strategy(node, snapshotted_rel, current_rel, model_config, target_exists) %}
    {%- set strategy = snapshot_timestamp_strategy(node, snapshotted_rel, current_rel, model_config, target_exists) -%}
    {%- set declaration = lago_mago.upstream_source_declaration(node) -%}
    {%- set key = lago_mago.declared_primary_key(declaration) -%}
    {#- one key expression, so composite keys need no dbt_unique_key_<n> columns -#}
    {%- set parts = [] -%}
    {%- for column in key -%}
        {%- if not loop.first -%}
            {%- do parts.append("'|'") -%}
        {%- endif -%}
        {%- do parts.append("cast(" ~ adapter.quote(column) ~ " as " ~ dbt.type_string() ~ ")") -%}
    {%- endfor -%}
    {%- set unique_key = parts[0] if parts | length == 1 else dbt.concat(parts) -%}
    {%- do strategy.update({
        'unique_key': unique_key,
        'scd_id': snapshot_hash_arguments([unique_key, strategy.updated_at]),
    }) -%}
    {{ return(strategy) }}
{% endmacro %}


{#- The source declaration a node descends from (the first source found walking up its parents). -#}
{% macro upstream_source_declaration(node) %}
    {%- set found = lago_mago.find_upstream_source(node) -%}
    {%- if found is none -%}
        {{ exceptions.raise_compiler_error(node.unique_id ~ " does not descend from a declared source table") }}
    {%- endif -%}
    {{ return(found) }}
{% endmacro %}


{% macro find_upstream_source(node) %}
    {%- for parent in node.depends_on.nodes if parent in graph.sources -%}
        {{ return(graph.sources[parent]) }}
    {%- endfor -%}
    {%- for parent in node.depends_on.nodes if parent in graph.nodes -%}
        {%- set found = lago_mago.find_upstream_source(graph.nodes[parent]) -%}
        {%- if found is not none -%}
            {{ return(found) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{% endmacro %}
