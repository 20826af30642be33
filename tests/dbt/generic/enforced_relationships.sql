{#-
    A relationship the source enforces (a foreign key, or a writer that never leaves an orphan): every non-NULL
    value of the column is a value of `field` in `to`, like dbt's relationships test. An orphan fails the build
    when the two sides' states in the warehouse come from one consistent cut of the source (a database capture's
    snapshot or log position, packages/lago_cdc/macros/lake.sql): the orphan is then in the source itself, or the pipeline broke. It
    only warns otherwise (a file source, or a build that consumed the two tables up to different captures, where a
    child can briefly arrive before its parent). Each failing row says which (`from_one_cut`, `cut`).
-#}
{% test enforced_relationships(model, column_name, to, field) %}

{{ config(warn_if='!= 0', error_if='!= 0 and max(from_one_cut) = 1') }}

{%- set cut = none -%}
{%- set sides_built = namespace(all=true) -%}
{%- if execute -%}
    {#- this test's node (`this` is its relation): its model is the child, `to` the parent -#}
    {%- set test_node = graph.nodes.values() | selectattr('resource_type', 'equalto', 'test')
        | selectattr('alias', 'equalto', this.identifier) | first -%}
    {%- set sides = [graph.nodes[test_node.attached_node]] -%}
    {%- for parent in test_node.depends_on.nodes if parent in graph.nodes and graph.nodes[parent].alias == to.identifier -%}
        {%- do sides.append(graph.nodes[parent]) -%}
    {%- endfor -%}
    {#- a side not built yet (a first build that failed before it, or `dbt test` on a new warehouse): nothing to
        check yet -#}
    {%- for side in sides -%}
        {%- set relation = lago_cdc.node_relation(side) -%}
        {%- if adapter.get_relation(relation.database, relation.schema, relation.identifier) is none -%}
            {%- set sides_built.all = false -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set cut = lago_cdc.shared_lake_cut(sides) if sides_built.all else none -%}
{%- endif %}
{%- if cut %}
-- both sides come from one consistent cut of the source: {{ cut }}
{%- endif %}

{%- if not sides_built.all %}
-- {{ model }} or {{ to }} is not built: nothing to check
select
    cast(null as {{ dbt.type_string() }}) as {{ column_name }},
    0 as from_one_cut,
    cast(null as {{ dbt.type_string() }}) as cut
where 1 = 0
{%- else %}

with

child as (
    select {{ column_name }} as from_field
    from {{ model }}
    where {{ column_name }} is not null
),

parent as (
    select {{ field }} as to_field
    from {{ to }}
)

select
    child.from_field as {{ column_name }},
    {{ 1 if cut else 0 }} as from_one_cut,
    {{ lago_cdc.sql_string(cut) if cut else 'cast(null as ' ~ dbt.type_string() ~ ')' }} as cut
from child
left join parent on child.from_field = parent.to_field
where parent.to_field is null
{%- endif %}

{% endtest %}
