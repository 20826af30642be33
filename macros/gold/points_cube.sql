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
    {%- set marks = '' -%}
    {%- if is_incremental() -%}
        {%- set feeds = [
            lago_cdc.feed_since_last_build(transactions),
            lago_cdc.feed_since_last_build(transaction_products),
            lago_cdc.feed_since_last_build(ref('silver_loyalty__products')),
        ] -%}
        {%- set changed_transactions, changed_lines, changed_products = feeds | map(attribute='changes') | list -%}
        {#- no feed moved and no backfill: no day to rewrite, the model keeps its last build -#}
        {%- if not parts -%}
            {%- set marks = lago_cdc.nothing_new_marks(feeds) -%}
        {%- endif -%}
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
    {{ return(parts | join(' union ') ~ (' ' ~ marks if marks else '')) }}
{% endmacro %}

