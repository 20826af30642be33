{#- A history model has at most one version per key without an end (dbt_valid_to NULL): the current one. -#}
{% test history_has_one_open_version(model, key) %}

select
    {%- for column in key %}
    {{ adapter.quote(column) }},
    {%- endfor %}
    count(*) as open_versions
from {{ model }}
where dbt_valid_to is null
group by {% for column in key %}{{ adapter.quote(column) }}{{ ', ' if not loop.last }}{% endfor %}
having count(*) > 1

{% endtest %}
