{#- The grain test: no two rows share the values of these columns (NULLs compare equal, as in GROUP BY). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

duplicated as (
    select
        {{ combination_of_columns | join(', ') }},
        count(*) as row_count
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
)

select * from duplicated

{% endtest %}
