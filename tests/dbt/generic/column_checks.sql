{#-
    Every column rule of a model in one test and one scan: dbt spends tens of milliseconds on each test node
    whatever its query costs, so a model's not_null, unique (also among the rows a condition picks, as a history's
    open versions), accepted_values, accepted_range and row expressions are one node. A failing row names the rule and the column (or the expression) and how many rows break it;
    the test's failures are the sum of those rows. Like every test of an incremental model, it reads the rows the
    last build wrote (every row with `--vars '{full_tests: true}'`).
-#}
{% test column_checks(
    model, not_null=[], unique=[], unique_where=[], accepted_values={}, accepted_range={}, expressions=[]
) %}

{{ config(fail_calc='coalesce(sum(failing_rows), 0)') }}

{%- set rules = [] -%}
{%- for column in not_null -%}
    {%- do rules.append(('not_null', column, 'count(*) - count(' ~ column ~ ')')) -%}
{%- endfor -%}
{%- for column in unique -%}
    {%- do rules.append(('unique', column, 'count(' ~ column ~ ') - count(distinct ' ~ column ~ ')')) -%}
{%- endfor -%}
{%- for rule in unique_where -%}
    {%- if not rule.columns or not rule.where -%}
        {{ exceptions.raise_compiler_error(
            "column_checks: each unique_where names its columns and its where condition") }}
    {%- endif -%}
    {#- NULLs pass, as in `unique`: a tuple counts when the condition holds and none of its values is NULL -#}
    {%- set quoted = [] -%}
    {%- set present = ['(' ~ rule.where ~ ')'] -%}
    {%- for column in rule.columns -%}
        {%- do quoted.append(adapter.quote(column)) -%}
        {%- do present.append(adapter.quote(column) ~ ' is not null') -%}
    {%- endfor -%}
    {%- set present = present | join(' and ') -%}
    {%- do rules.append((
        'unique_where', '(' ~ rule.columns | join(', ') ~ ') where ' ~ rule.where,
        'count(case when ' ~ present ~ ' then 1 end) - count(distinct case when ' ~ present ~ ' then '
            ~ lago_mago.row_value(quoted) ~ ' end)'
    )) -%}
{%- endfor -%}
{%- for column, values in accepted_values.items() -%}
    {%- if not values -%}
        {{ exceptions.raise_compiler_error(
            "column_checks: accepted_values of " ~ column ~ " lists no value") }}
    {%- endif -%}
    {%- set listed = [] -%}
    {%- for value in values -%}
        {%- do listed.append(lago_cdc.sql_string(value) if value is string else value) -%}
    {%- endfor -%}
    {%- do rules.append((
        'accepted_values', column,
        'sum(case when ' ~ column ~ ' not in (' ~ listed | join(', ') ~ ') then 1 else 0 end)'
    )) -%}
{%- endfor -%}
{%- for column, bounds in accepted_range.items() -%}
    {%- set outside = [] -%}
    {%- if bounds.min_value is defined -%}{%- do outside.append(column ~ ' < ' ~ bounds.min_value) -%}{%- endif -%}
    {%- if bounds.max_value is defined -%}{%- do outside.append(column ~ ' > ' ~ bounds.max_value) -%}{%- endif -%}
    {%- if not outside -%}
        {{ exceptions.raise_compiler_error(
            "column_checks: accepted_range of " ~ column ~ " has neither min_value nor max_value") }}
    {%- endif -%}
    {%- do rules.append(('accepted_range', column, 'sum(case when ' ~ outside | join(' or ') ~ ' then 1 else 0 end)')) -%}
{%- endfor -%}
{%- for expression in expressions -%}
    {%- do rules.append(('expression_is_true', expression, 'sum(case when not (' ~ expression ~ ') then 1 else 0 end)')) -%}
{%- endfor -%}
{%- if not rules -%}
    {{ exceptions.raise_compiler_error("column_checks: no rule given") }}
{%- endif %}

with

counted as (
    select
        {%- for rule in rules %}
        {{ rule[2] }} as rule_{{ loop.index }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ model }}
)

{% for rule in rules -%}
select
    '{{ rule[0] }}' as rule_name,
    {{ lago_cdc.sql_string(rule[1]) }} as checked,
    rule_{{ loop.index }} as failing_rows
from counted
where rule_{{ loop.index }} > 0
{% if not loop.last %}
union all

{% endif -%}
{%- endfor %}

{% endtest %}

