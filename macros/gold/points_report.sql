{#-
    The months an incremental run of the monthly report rewrites. A month's row depends only on the transactions
    dated in it and on how many customers were created in it, so the old and the new month of every changed
    transaction (the pre- and post-images of Silver's feed) are all it can move, and of the customers' changes only
    the months whose count they move.
-#}
{% macro points_report_touched_months() %}
    {%- set feeds = [
        lago_cdc.feed_since_last_build(ref('silver_loyalty__transactions')),
        lago_cdc.feed_since_last_build(ref('silver_loyalty__customers')),
    ] -%}
    {%- set changed_transactions, changed_customers = feeds | map(attribute='changes') | list -%}
    {%- set touched -%}
        {#- no feed moved: no month to rewrite, the model keeps its last build -#}
        {{ lago_cdc.nothing_new_marks(feeds) }}
        select cast({{ dbt.date_trunc('month', 'changed_transactions.transaction_date') }} as date) as month_start_date
        from {{ changed_transactions }} as changed_transactions
        union
        {{ lago_mago.points_report_customer_months(changed_customers) }}
    {%- endset -%}
    {{ return(touched) }}
{% endmacro %}

{#-
    The months whose count of customers the changes move, pre-images taken out and post-images put back, so an
    update that keeps its customer's creation month (a points balance, say) moves none.
-#}
{% macro points_report_customer_months(changed_customers) -%}
    select customer_months.month_start_date
    from (
        select
            cast({{ dbt.date_trunc('month', 'changed_customers.created_at') }} as date) as month_start_date,
            sum(case when changed_customers._change_type in ('delete', 'update_preimage') then -1 else 1 end)
                as customers_moved
        from {{ changed_customers }} as changed_customers
        group by 1
    ) as customer_months
    where customer_months.customers_moved <> 0
{%- endmacro %}
