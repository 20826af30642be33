{% macro points_cube_touched_days() %}
    {%- set backfill_start = var('backfill_start_date') -%}
    {%- set backfill_end = var('backfill_end_date') -%}
    {%- set transactions = ref('silver_loyalty__transactions') -%}
    {%- set transaction_products = ref('silver_loyalty__transaction_products') -%}
    {%- set parts = [] -%}
    {%- if backfill_start and backfill_end -%}
        {%- do parts.append(
            "select transaction_date from " ~ transactions ~ " where transaction_date between cast("
            ~ lago_cdc.sql_string(backfill_start) ~ " as date) and cast("
            ~ lago_cdc.sql_string(backfill_end) ~ " as date)") -%}
    {%- endif -%}
    {%- if is_incremental() -%}
        {%- set changed_transactions = lago_cdc.changes_since_last_build(transactions) -%}
        {%- set changed_lines = lago_cdc.changes_since_last_build(transaction_products) -%}
        {%- set changed_products = lago_cdc.changes_since_last_build(ref('silver_loyalty__products')) -%}
        {#- a moved, updated, inserted or deleted transaction: its old and its new day -#}
        {%- do parts.append("select changed_transactions.transaction_date from " ~ changed_transactions
            ~ " as changed_transactions") -%}
        {#- a changed line (old and new image): the day of its transaction -#}
        {%- do parts.append(
            "select transactions.transaction_date from " ~ changed_lines ~ " as changed_lines"
            ~ " inner join " ~ transactions ~ " as transactions"
            ~ " on changed_lines.transaction_id = transactions.transaction_id") -%}
        {#- a product renamed, recategorised or deleted: every day with a line of it -#}
        {%- do parts.append(
            "select transactions.transaction_date from " ~ changed_products ~ " as changed_products"
            ~ " inner join " ~ transaction_products ~ " as transaction_products"
            ~ " on changed_products.product_id = transaction_products.product_id"
            ~ " inner join " ~ transactions ~ " as transactions"
            ~ " on transaction_products.transaction_id = transactions.transaction_id") -%}
    {%- endif -%}
    {%- if not parts -%}
        {{ return("select cast(null as date) as transaction_date where 1 = 0") }}
    {%- endif -%}
    {{ return(parts | join(' union ')) }}
{% endmacro %}


{#-
    Pre-hook of the cube: empty every touched day, so a day whose last transaction moved away or was deleted
    keeps no row (delete+insert alone rewrites only the days the new rows hold).
-#}
{% macro points_cube_delete_touched_days() %}
    {%- if not execute or not is_incremental() -%}
        {{ return('select 1 as nothing_to_delete') }}
    {%- endif -%}
    {{ return(adapter.dispatch('delete_where_in', 'lago_mago')(this, 'transaction_date', points_cube_touched_days())) }}
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
