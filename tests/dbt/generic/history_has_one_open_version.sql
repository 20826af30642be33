{#- A history model has at most one version per key without an end (dbt_valid_to NULL): the current one. -#}
{% test history_has_one_open_version(model, key) %}

select
    {{ lago_cdc.key_columns(key) }},
    count(*) as open_versions
from {{ model }}
where dbt_valid_to is null
group by {{ lago_cdc.key_columns(key) }}
having count(*) > 1

{% endtest %}
