{#-
    A table's primary key in SQL: its columns listed (a partition or a select list) and a match of two rows on it
    (a join or a correlated condition). Every statement of the engine spells a key through these two, so a
    composite key, and quoting of mixed-case source names, are handled in one place.
-#}

{#- `"k1", "k2"`, or `q."k1", q."k2"` with a qualifier. -#}
{% macro key_columns(key, qualifier=none) -%}
    {%- set prefix = qualifier ~ '.' if qualifier else '' -%}
    {%- for column in key -%}
        {{ prefix }}{{ adapter.quote(column) }}{{ ', ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}

{#- `left."k1" = right."k1" and left."k2" = right."k2"`: the rows of `left` and `right` with one key. -#}
{% macro key_join(key, left, right) -%}
    {%- for column in key -%}
        {{ left }}.{{ adapter.quote(column) }} = {{ right }}.{{ adapter.quote(column) }}{{ ' and ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}


{#-
    The first row of each group by the order given, the one skeleton every change-reading statement uses: copies of
    one change (grouped by its identity, earliest file first) and the latest change of a key (grouped by the key,
    newest first). The rank is kept as `rank_column` (1 on every row returned). A subquery, not QUALIFY, which
    open-source Spark lacks.
-#}
{% macro first_per_group(relation, partition_by, order_by, rank_column) -%}
    select * from (
        select
            *,
            row_number() over (partition by {{ partition_by }} order by {{ order_by }}) as {{ rank_column }}
        from {{ relation }}
    ) as ranked
    where {{ rank_column }} = 1
{%- endmacro %}
