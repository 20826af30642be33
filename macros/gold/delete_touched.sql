{#-
    Pre-hook of a Gold model rewritten by slices (days, months, order dates): on an incremental run, empty every
    slice its producers' changes touched, so a slice left with no input row keeps no row, as after a full refresh
    (delete+insert or append alone rewrites only the slices the new rows hold). `touched` is the macro giving the
    query of the touched values, called with `args` only here: at parse time and on a first build it would read
    change feeds that do not exist yet.
-#}
{% macro delete_touched(column, touched) %}
    {%- if not execute or not is_incremental() -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(adapter.dispatch('delete_where_in', 'lago_mago')(this, column, touched(*varargs))) }}
{% endmacro %}


{#- Delete the rows of `relation` whose `column` is in a query's single column. -#}
{% macro default__delete_where_in(relation, column, query) %}
    delete from {{ relation }}
    where {{ column }} in (select touched.{{ column }} from ({{ query }}) as touched)
{% endmacro %}

{#- Delta's DELETE takes no subquery: MERGE against the touched values deletes the same rows. -#}
{% macro spark__delete_where_in(relation, column, query) %}
    merge into {{ relation }} as target
    using (select distinct touched.{{ column }} from ({{ query }}) as touched) as touched
        on target.{{ column }} = touched.{{ column }}
    when matched then delete
{% endmacro %}


{#-
    Whether a model rewritten by slices reads only the touched slices: when it is incremental, except under
    `dbt show`, which then reads every slice, so that what it shows is what the table holds and not the batch a
    build would write (`dbt compile` keeps the incremental SQL: it is the logic a build runs).
-#}
{% macro rewrites_slices() %}
    {{ return(is_incremental() and flags.WHICH != 'show') }}
{% endmacro %}
