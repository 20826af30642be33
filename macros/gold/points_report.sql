{#-
    The months an incremental run of the monthly report rewrites. A month's row depends only on the transactions
    dated in it and the customers created in it, so the old and the new month of every changed transaction and
    customer (the pre- and post-images of Silver's feeds) are all it can move.
-#}
{% macro points_report_touched_months() %}
    {%- set changed_transactions = lago_cdc.changes_since_last_build(ref('silver_loyalty__transactions')) -%}
    {%- set changed_customers = lago_cdc.changes_since_last_build(ref('silver_loyalty__customers')) -%}
    {%- set touched -%}
        select cast({{ dbt.date_trunc('month', 'changed_transactions.transaction_date') }} as date) as month_start_date
        from {{ changed_transactions }} as changed_transactions
        union
        select cast({{ dbt.date_trunc('month', 'changed_customers.created_at') }} as date) as month_start_date
        from {{ changed_customers }} as changed_customers
    {%- endset -%}
    {{ return(touched) }}
{% endmacro %}
