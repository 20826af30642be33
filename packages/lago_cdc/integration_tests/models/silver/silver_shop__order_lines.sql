{{ config(unique_key=['order_id', 'line_number']) }}

with

source as (
    -- every Bronze row on a first build; then the rows Bronze changed since the last build, deletes as 'D'
    select * from {{ lago_cdc.latest_changes(ref('bronze_shop__order_lines')) }}
),

final as (
    select
        -- ids
        order_id,
        line_number,

        -- strings
        product_name,

        -- numerics
        quantity,
        unit_price,

        -- lineage
        _cdc_operation,
        _cdc_timestamp,
        _cdc_sequence
    from source
)

select * from final
